"""configs/ablations: each config changes what it says; every MC head trains and streams."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mtu_toolkit.models.mc_heads import CorrelationMCHead, FANMCHead, FlowMCHead, NoneMCHead
from mtu_toolkit.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
ABLATIONS = osp.join(ROOT, 'configs', 'ablations')


def _matching(model):
    return model.backbone.num_matching == model.backbone.num_units


def _no_mc(model):
    return (isinstance(model.backbone.mc_head, NoneMCHead) and model.backbone.motion_layers is None
            and model.motion_loss is None)


def _no_si(model):
    """The correlation head on the detail network's own features: no structure injection."""
    return (isinstance(model.backbone.mc_head, CorrelationMCHead)
            and not model.backbone.structure_injection and model.backbone.motion_layers is None)


# what each ablation must change, checked on the built full-size model
EXPECTED = {
    # Table 1 (residual learning against MC + motion loss; none of its models has structure
    # injection) and Table 2 (MC module, motion loss, structure injection), row by row
    'mtu2_dvd_no_residual_no_mc': lambda m: (not m.backbone.residual and _no_mc(m)),
    'mtu2_dvd_no_mc': lambda m: m.backbone.residual and _no_mc(m),
    'mtu2_dvd_no_residual_no_si': lambda m: (not m.backbone.residual and _no_si(m)
                                             and m.motion_loss is not None),
    'mtu2_dvd_no_motion_loss_no_si': lambda m: (m.motion_loss is None and _no_si(m)),
    'mtu2_dvd_no_structure_injection': lambda m: (not m.backbone.structure_injection
                                                  and m.backbone.motion_layers is None),
    'mtu2_dvd_addition_only': lambda m: (m.backbone.structure_injection
                                         and m.backbone.motion_layers is None),
    'mtu2_dvd_motion_layer_only': lambda m: (not m.backbone.structure_injection
                                             and m.backbone.motion_layers is not None),
    'mtu2_dvd_d5': lambda m: m.backbone.mc_head.max_displacement == 5,
    'mtu2_dvd_d10': lambda m: m.backbone.mc_head.max_displacement == 10,
    'mtu2_dvd_d20': lambda m: m.backbone.mc_head.max_displacement == 20,
    'mtu2_dvd_d30': lambda m: m.backbone.mc_head.max_displacement == 30,
    'mtu2_dvd_match_every_unit': _matching,
    'mtu4_dvd_match_every_unit': _matching,
    'mtu10_dvd_match_every_unit': _matching,
    'mtu2_dvd_mc_fan': lambda m: (isinstance(m.backbone.mc_head, FANMCHead)
                                  and m.motion_loss is None),
    'mtu2_dvd_mc_flow': lambda m: (isinstance(m.backbone.mc_head, FlowMCHead)
                                   and m.motion_loss is None),
}


def test_every_ablation_config_has_a_stated_effect():
    names = {osp.splitext(osp.basename(p))[0] for p in glob.glob(osp.join(ABLATIONS, '*.py'))}
    assert names == set(EXPECTED)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_ablation_changes_only_what_it_says(name):
    cfg = Config.fromfile(osp.join(ABLATIONS, f'{name}.py'))
    base = Config.fromfile(osp.join(ROOT, 'configs', 'mtu', name.split('_dvd')[0] + '_dvd.py'))
    model = MODELS.build(cfg.model)
    assert EXPECTED[name](model)
    if name == 'mtu2_dvd_d10':  # the default D, spelled out
        assert cfg.model == base.model
    else:
        assert not EXPECTED[name](MODELS.build(base.model))  # the base is different
    # the same training setup apart from the flow that only the motion loss needs
    for key in ('optim_wrapper', 'train_cfg', 'param_scheduler'):
        assert cfg[key] == base[key]
    assert cfg.train_dataloader.dataset.with_flow == (cfg.model.motion_loss is not None)


def _tiny(name):
    cfg = Config.fromfile(osp.join(ABLATIONS, f'{name}.py')).model
    cfg.backbone.update(channels=4, num_blocks=1)
    return MODELS.build(cfg)


def _batch(t=2, h=18, w=22):
    inputs = torch.randint(0, 256, (1, t + 4, 3, h, w), dtype=torch.uint8)
    gt = torch.randint(0, 256, (1, t, 3, h, w), dtype=torch.uint8)
    return dict(inputs=inputs, data_samples=dict(gt=gt, flow=torch.randn(1, t, 2, h, w)))


@pytest.mark.parametrize('name', ['mtu2_dvd_d5', 'mtu2_dvd_mc_fan', 'mtu2_dvd_mc_flow',
                                  'mtu2_dvd_no_mc'])
def test_every_head_trains_a_step_and_streams_odd_sizes(name, one_thread):
    model = _tiny(name).train()
    head = model.backbone.mc_head
    before = [p.detach().clone() for p in head.parameters()]
    optim = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3))
    log = model.train_step(_batch(), optim)
    assert torch.isfinite(log['loss']) and ('loss_motion' in log) == (model.motion_loss is not None)
    # the learned heads learn (the correlation and none heads have no parameters)
    assert all(not torch.equal(b, p) for b, p in zip(before, head.parameters()))

    model.eval()
    frames = torch.rand(5, 3, 13, 21)
    stream = model.stream()
    outs = sum((stream.push(f[None]) for f in frames), []) + stream.flush()
    clip = model.infer_clip(frames)
    assert clip.shape == (5, 3, 13, 21) and 0 <= clip.min() and clip.max() <= 1
    torch.testing.assert_close(torch.cat(outs), clip)
