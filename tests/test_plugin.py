"""examples/plugin: a third-party MC head and loss, used by a config through custom_imports."""
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), 'configs'))
from tiny_data import ROOT, make_dvd_tree, tool_env  # noqa: E402

from mtu_toolkit.engine import setup_safe_loading  # noqa: E402
from mtu_toolkit.registry import MODELS  # noqa: E402
import prewarmed  # noqa: E402

PLUGIN = osp.join(ROOT, 'examples', 'plugin')
CONFIG = osp.join(PLUGIN, 'configs', 'mtu2_plugin_tiny.py')


@pytest.fixture
def plugin_config(monkeypatch):
    monkeypatch.syspath_prepend(PLUGIN)
    return Config.fromfile(CONFIG)  # imports the plugin through custom_imports


def test_config_builds_the_plugin_components(plugin_config):
    model = MODELS.build(plugin_config.model)
    assert type(model.backbone.mc_head).__module__ == 'mtu_plugin_example.global_shift_head'
    assert [type(p).__name__ for p in model.deblur_loss.pixel_losses] == ['CharbonnierLoss']
    assert 'mtu_plugin_example' not in sys.modules['mtu_toolkit'].__dict__


def test_global_shift_head_finds_a_known_translation(plugin_config):
    head = MODELS.build(dict(type='GlobalShiftMCHead', motion_channels=6, feat_channels=2,
                             max_displacement=3))
    big = torch.randn(1, 6, 30, 30)
    cur, prev = big[:, :, 5:25, 5:25], big[:, :, 7:27, 4:24]  # cur(x) = prev(x + (1, -2))
    motion = head.estimate(cur, prev)['motion']
    assert (motion[0, 0] == 1).all() and (motion[0, 1] == -2).all()
    feat = torch.randn(1, 2, 80, 80)
    gate = torch.sigmoid(head.gate)
    # aligned: out(y, x) = feat(y + 4 * dy, x + 4 * dx) = feat(y - 8, x + 4)
    expected = gate * torch.roll(feat, (8, -4), (2, 3)) + (1 - gate) * feat
    warped = head.warp(feat, motion)
    torch.testing.assert_close(warped[..., 8:-8, 8:-8], expected[..., 8:-8, 8:-8])
    (warped * feat).sum().backward()  # the gate learns how much to trust the shift
    assert head.gate.grad.abs().min() > 0


def test_charbonnier_loss_against_formula(plugin_config):
    """The plugin gives the pixel loss; the toolkit's multi-output loss weights it."""
    loss = MODELS.build(dict(type='MultiOutputDeblurLoss', aux_weight=0.5,
                             pixel_loss=dict(type='CharbonnierLoss', eps=0.1)))
    out, aux, gt = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.3), torch.zeros(1, 3, 2, 2)
    expected = 0.1 + 0.5 * (0.3 ** 2 + 0.1 ** 2) ** 0.5
    assert loss(out, [aux], gt).item() == pytest.approx(expected)


@pytest.mark.slow
def test_plugin_trains_two_iterations_through_train_tool(tmp_path):
    data = make_dvd_tree(str(tmp_path / 'data'))
    work = tmp_path / 'work'
    options = [f'{loader}.dataset.data_root={data}'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    options += ['train_dataloader.dataset.num_frames=3', 'train_dataloader.batch_size=2',
                'train_dataloader.dataset.pipeline.0.size=16',
                'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
                'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
                'train_cfg.max_iters=2', 'train_cfg.val_interval=100',
                'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=2']
    env = tool_env()
    env['PYTHONPATH'] = os.pathsep.join([PLUGIN, env['PYTHONPATH']])
    proc = prewarmed.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), CONFIG,
                          '--work-dir', str(work), '--cfg-options'] + options,
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert 'Iter(train) [2/2]' in log
    setup_safe_loading()
    state = torch.load(work / 'iter_2.pth', weights_only=True)['state_dict']
    # the checkpoint holds the plugin head (the gate only moves where the frame shifts, which
    # the tiny pan of 1 px per frame does not reach at 1/4 resolution; see the gradient test)
    assert state['backbone.mc_head.gate'].shape == (1, 8, 1, 1)
    assert "type='CharbonnierLoss'" in log and "type='GlobalShiftMCHead'" in log
