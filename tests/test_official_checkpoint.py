"""Released checkpoints of the paper's authors: conversion against the reference network's own
frames (golden fixture), all-or-nothing conversion, and one strict loading path for all tools.

The golden fixture ``tests/golden/official_mtu_tiny.npz`` was written by
``tests/golden/make_official_fixture.py`` from the authors' implementation (its docstring says
how): a tiny variant's released-format weights, 6 frames of real footage and the frames the
reference network restored from them, with the displacements its matching found.
"""
import json
import os
import pickle
import re
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs'))
from tiny_data import ROOT, make_dvd_tree, tool_env, write_config  # noqa: E402

from mtu_toolkit.apis import CheckpointError, init_restorer  # noqa: E402
from mtu_toolkit.engine import setup_safe_loading  # noqa: E402
from mtu_toolkit.engine.checkpoint import (CheckpointLoadError, check_state_dict,  # noqa: E402
                                           fit_state_dict)
from mtu_toolkit.models.official_checkpoint import (  # noqa: E402
    OfficialCheckpointError, convert_official_state_dict, is_official_state_dict,
    read_architecture)
from mtu_toolkit.registry import MODELS  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, 'tools'))
import convert_official_ckpt  # noqa: E402
import prewarmed  # noqa: E402

GOLDEN = os.path.join(ROOT, 'tests', 'golden', 'official_mtu_tiny.npz')
pytestmark = pytest.mark.usefixtures('one_thread')


# ---------------------------------------------------------------- helpers
def golden():
    """(released state dict float32, clip (T, 3, H, W) in [0, 1], reference frames, motion)."""
    data = np.load(GOLDEN)
    state = OrderedDict((k[2:], torch.from_numpy(data[k]).float())
                        for k in data.files if k.startswith('w/'))
    clip = torch.from_numpy(data['clip']).permute(0, 3, 1, 2).float() / 255
    out = torch.from_numpy(data['out'].astype(np.float32) / 65535).permute(0, 3, 1, 2)
    return state, clip, out, torch.from_numpy(data['motion']).long()


def without_deblur(state):
    return OrderedDict((k, v) for k, v in state.items() if '.deblur_layer.' not in k)


def with_module(state):
    return OrderedDict(('module.' + k, v) for k, v in state.items())


def released_shapes(units, ch, blocks, matching=1, deblur=True):
    """Key -> shape of a released file, written from the layer list of the paper's network
    (independently of the converter's tables)."""
    conv = lambda o, i, k: {'weight': (o, i, k, k), 'bias': (o,)}  # noqa: E731
    deconv = lambda i, o: {'weight': (i, o, 4, 4), 'bias': (o,)}  # noqa: E731
    layers = {'base_conv.0': conv(ch, 3, 3), 'inp_prev_conv.0': conv(ch, 15, 3)}
    for i in range(units):
        layers.update({f'HGs.{i}.enc1.0': conv(ch, 2 * ch, 5), f'HGs.{i}.enc2.0': conv(ch, ch, 3),
                       f'HGs.{i}.enc3.0': conv(2 * ch, ch, 3),
                       f'HGs.{i}.RB_end.0': conv(2 * ch, 2 * ch, 3),
                       f'HGs.{i}.dec1.0': deconv(2 * ch, ch), f'HGs.{i}.dec2.0': deconv(ch, ch)})
        for j in range(blocks):
            layers[f'HGs.{i}.RBs.{j}.0'] = conv(2 * ch, 2 * ch, 3)
            layers[f'HGs.{i}.RBs.{j}.2'] = conv(2 * ch, 2 * ch, 3)
    for k in range(matching):
        layers[f'motion_layer.{k}.0'] = conv(2 * ch, ch, 5)
    layers['out'] = conv(3, ch, 3)
    for k in range(units - 1 if deblur else 0):
        layers[f'deblur_layer.{k}'] = conv(3, 2 * ch, 3)
    return {f'Network.{name}.{p}': shape for name, ps in layers.items()
            for p, shape in ps.items()}


def fake_released(units, ch, blocks, **kw):
    """A released-format state dict of those shapes holding no memory (zero-stride tensors)."""
    return OrderedDict((k, torch.zeros(()).expand(s))
                       for k, s in released_shapes(units, ch, blocks, **kw).items())


def restorer_for(arch):
    import mtu_toolkit.models  # noqa: F401
    return MODELS.build(dict(type='MTURestorer', backbone=arch.backbone_cfg())).eval()


def run_recording_motion(restorer, clip, stream=False):
    """Restored frames and the matching unit's displacement (T, 2, h, w) at each frame."""
    head, motions = restorer.backbone.mc_head, []
    estimate = head.estimate

    def recording(cur, prev):
        aux = estimate(cur, prev)
        motions.append(aux['motion'][0])
        return aux

    head.estimate = recording
    try:
        if stream:
            s, outs = restorer.stream(), []
            for frame in clip:
                outs += s.push(frame)
            outs += s.flush()
            out = torch.cat(outs)
        else:
            out = restorer.infer_clip(clip)
    finally:
        del head.estimate
    return out, torch.stack(motions)


def tiny_config(path, arch):
    model = dict(type='MTURestorer', backbone=arch.backbone_cfg())
    path.write_text(f"default_scope = 'mtu'\nmodel = {model!r}\n")
    return str(path)


# ---------------------------------------------------------------- golden: the reference's frames
@pytest.mark.parametrize('form', ['training', 'test-time', 'module.'])
def test_converted_fixture_gives_the_reference_frames(form):
    state, clip, ref_out, ref_motion = golden()
    state = {'training': state, 'test-time': without_deblur(state),
             'module.': with_module(without_deblur(state))}[form]
    conv = convert_official_state_dict(state)
    assert conv.arch.deblur_layers == (form == 'training')
    assert conv.wrapped == (form == 'module.')
    assert (conv.arch.num_units, conv.arch.channels, conv.arch.num_blocks,
            conv.arch.num_matching) == (2, 6, 1, 1)
    restorer = restorer_for(conv.arch)
    restorer.load_state_dict(fit_state_dict(restorer, conv.state_dict, 'fixture', print),
                             strict=True)
    # the fixture is not trivial: the reference changes the frames and its matching moves
    assert (ref_out - clip).abs().mean() > 0.05 and (ref_motion[1:] != 0).float().mean() > 0.3
    out, motion = run_recording_motion(restorer, clip)
    assert torch.equal(motion, ref_motion)  # the same displacement at every position
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-4)
    streamed, _ = run_recording_motion(restorer, clip, stream=True)
    torch.testing.assert_close(streamed, ref_out, rtol=0, atol=1e-4)


def test_released_file_through_converter_and_tools(tmp_path, capsys):
    state, clip, ref_out, _ = golden()
    src = tmp_path / 'MTU_tiny.pytorch'
    torch.save(without_deblur(with_module(state)), src)  # the test-time network, from DDP
    dst = tmp_path / 'tiny.pth'
    assert convert_official_ckpt.main([str(src), str(dst)]) == 0
    printed = capsys.readouterr().out
    assert 'wrote' in printed and 'without the training-only deblur layers' in printed
    ckpt = torch.load(dst, weights_only=True)  # plain tensors and types only
    assert set(ckpt) == {'meta', 'state_dict'}
    assert ckpt['meta']['architecture']['num_units'] == 2
    assert all(k.startswith('backbone.') for k in ckpt['state_dict'])
    assert not list(tmp_path.glob('*.tmp*'))

    cfg = tiny_config(tmp_path / 'tiny.py', read_architecture(state))
    for checkpoint in (dst, src):  # our converted file, and the released one directly
        restorer = init_restorer(cfg, str(checkpoint))
        printed = capsys.readouterr().out
        assert printed.count('no auxiliary deblur layers') == 1
        assert printed.count('converted') == (checkpoint == src)
        torch.testing.assert_close(restorer.infer_clip(clip), ref_out, rtol=0, atol=1e-4)

    setup_safe_loading()  # mmengine's loader (the Runner's load_from) converts too
    loaded = _load_checkpoint(str(src))
    assert loaded['meta']['converted_from'] == str(src)
    assert loaded['state_dict'].keys() == ckpt['state_dict'].keys()


def test_a_released_file_into_a_config_of_other_settings_is_refused(tmp_path):
    """The released MTU2 fits a D=5 or residual-free config by shape: refused, naming the
    setting, whether the file is released, converted now, or converted by an older toolkit
    (its meta without network_settings)."""
    state = fake_released(2, 6, 1)
    arch = read_architecture(state)
    src = tmp_path / 'MTU_tiny.pytorch'
    torch.save(state, src)
    dst, old = tmp_path / 'tiny.pth', tmp_path / 'old.pth'
    assert convert_official_ckpt.main([str(src), str(dst)]) == 0
    ckpt = torch.load(dst, weights_only=True)
    assert ckpt['meta']['network_settings'] == arch.network_settings()
    del ckpt['meta']['network_settings']
    torch.save(ckpt, old)
    for key, value, said in (
            ('max_displacement', 5, 'mc_head.max_displacement 10 in the checkpoint, 5 in the '
                                    'config'),
            ('residual', False, 'residual True in the checkpoint, False in the config')):
        model = arch.backbone_cfg()
        if key == 'residual':
            model[key] = value
        else:
            model['mc_head'][key] = value
        cfg = tmp_path / f'{key}.py'
        cfg.write_text(f"default_scope = 'mtu'\nmodel = "
                       f"{dict(type='MTURestorer', backbone=model)!r}\n")
        for checkpoint in (src, dst, old):
            with pytest.raises(CheckpointError) as err:
                init_restorer(str(cfg), str(checkpoint))
            assert str(err.value) == (
                f'checkpoint {checkpoint} for config {cfg}: the checkpoint was trained with '
                f'other network settings, which its weights load into without a mismatch: '
                f'{said}')
    for checkpoint in (src, dst, old):  # the reference's own settings load
        init_restorer(tiny_config(tmp_path / 'ok.py', arch), str(checkpoint))


def test_network_settings_name_only_what_the_weights_cannot_show():
    from mtu_toolkit.models.network_settings import network_settings, settings_differences
    base = dict(backbone=dict(type='mtu.MTUNet', mc_head=dict(type='correlation')))
    settings = network_settings(base)
    assert settings['mc_head'] == dict(type='CorrelationMCHead', max_displacement=10, smooth=5)
    assert not {'weight_init', 'init_std', 'aux_outputs'} & settings.keys()
    same = dict(backbone=dict(type='MTUNet', weight_init='normal', aux_outputs=False))
    assert settings_differences(settings, network_settings(same)) == []
    none = dict(backbone=dict(type='MTUNet', mc_head=dict(type='none')))
    assert settings_differences(settings, network_settings(none)) == [
        "mc_head.type 'CorrelationMCHead' in the checkpoint, 'NoneMCHead' in the config"]
    assert settings_differences(None, settings) == []  # a checkpoint that records none
    assert network_settings(dict(backbone=dict(type='NotRegistered'))) is None
    # a setting that one record lacks (added in a later release) is not a difference
    older = {k: v for k, v in settings.items() if k != 'motion_layer'}
    assert settings_differences(older, settings) == []
    # settings that change nothing given the others: the structure injection of a head
    # without motion features, matching in every unit of one unit
    assert settings_differences(network_settings(none), network_settings(
        dict(backbone=dict(type='MTUNet', mc_head=dict(type='none'),
                           structure_injection=False, motion_layer=False)))) == []
    assert settings_differences(
        network_settings(dict(backbone=dict(type='MTUNet', num_units=1))),
        network_settings(dict(backbone=dict(type='MTUNet', num_units=1,
                                            match_every_unit=True)))) == []


def test_network_settings_agree_on_equivalent_spellings():
    """smooth None, 0 and 1 all mean no smoothing (the same frames), and a backbone that takes
    its head by registered name records it by name: neither is refused, a real difference
    still is."""
    import torch.nn as nn

    from mtu_toolkit.models.network_settings import network_settings, settings_differences
    from mtu_toolkit.registry import MODELS

    def head(**kw):
        return network_settings(dict(backbone=dict(type='MTUNet', mc_head=dict(
            type='correlation', **kw))))

    assert head(smooth=0)['mc_head']['smooth'] == 0
    assert settings_differences(head(smooth=1), head(smooth=None)) == []
    assert settings_differences(head(smooth=1), head(smooth=3)) == [
        'mc_head.smooth 0 in the checkpoint, 3 in the config']
    # a record saved before the head had settings_args (smooth 1 as given) compares alike
    older = dict(head(), mc_head=dict(head()['mc_head'], smooth=1))
    assert settings_differences(older, head(smooth=0)) == []

    @MODELS.register_module(force=True)
    class HeadByName(nn.Module):
        def __init__(self, mc_head='correlation', width=8):
            super().__init__()

    by_name = network_settings(dict(backbone=dict(type='HeadByName')))
    assert by_name['mc_head'] == 'correlation'
    assert settings_differences(by_name, network_settings(dict(backbone=dict(
        type='HeadByName', mc_head='CorrelationMCHead')))) == []
    assert settings_differences(by_name, network_settings(dict(backbone=dict(
        type='HeadByName', mc_head='none')))) == [
            "mc_head.type 'CorrelationMCHead' in the checkpoint, 'NoneMCHead' in the config"]
    # a name stands for that head with its defaults (D=10)
    assert settings_differences(by_name, network_settings(dict(backbone=dict(
        type='HeadByName', mc_head=dict(type='correlation', max_displacement=5))))) == [
            'mc_head.max_displacement 10 in the checkpoint, 5 in the config']


def test_network_settings_of_a_plugin_are_the_same_in_every_process():
    """A function default is recorded by name (its repr holds an address); a subclass that
    passes **kwargs on has its parent's defaults filled in."""
    import torch.nn.functional as F

    from mtu_toolkit.models.backbones import MTUNet
    from mtu_toolkit.models.mc_heads import CorrelationMCHead
    from mtu_toolkit.models.network_settings import network_settings, settings_differences

    class ActHead(CorrelationMCHead):
        def __init__(self, motion_channels, feat_channels, act=F.relu, scale=object(), **kw):
            super().__init__(motion_channels, feat_channels, **kw)

    class GainNet(MTUNet):
        def __init__(self, gain=1.0, **kwargs):
            super().__init__(**kwargs)

    head = network_settings(dict(backbone=dict(type=MTUNet, mc_head=dict(type=ActHead))))
    assert head['mc_head'] == dict(type='ActHead', act='torch.nn.functional.relu',
                                   max_displacement=10, smooth=5)  # (no address, no object)
    short = network_settings(dict(backbone=dict(type=GainNet)))
    spelt = network_settings(dict(backbone=dict(type=GainNet, residual=True, num_units=2,
                                                mc_head=dict(type='correlation'))))
    assert short == spelt and short['gain'] == 1.0 and short['residual'] is True
    assert settings_differences(short, network_settings(
        dict(backbone=dict(type=GainNet, residual=False)))) == [
            'residual True in the checkpoint, False in the config']


def test_deblur_video_takes_a_released_file(tmp_path, capsys):
    import cv2
    deblur_tool = __import__('deblur_video')
    state, clip, ref_out, _ = golden()
    src = tmp_path / 'MTU_tiny.pytorch'
    torch.save(state, src)  # the training form, with the deblur layers
    frames = tmp_path / 'in'
    frames.mkdir()
    for i, f in enumerate(np.load(GOLDEN)['clip']):
        assert cv2.imwrite(str(frames / f'{i:03d}.png'), f[..., ::-1].copy())
    cfg = tiny_config(tmp_path / 'tiny.py', read_architecture(state))
    out = tmp_path / 'out'
    assert deblur_tool.main([cfg, str(src), str(frames), str(out), '--quiet',
                             '--device', 'cpu']) == 0
    assert capsys.readouterr().out.count("converted to this toolkit's layout") == 1
    got = np.stack([cv2.imread(str(out / n))[..., ::-1] for n in sorted(os.listdir(out))])
    ref = (ref_out * 255).round().permute(0, 2, 3, 1).numpy()
    # 8-bit PNG frames of the tool's CPU kernels: the reference's, up to a rounding flip
    assert np.abs(got.astype(float) - ref).max() <= 1


# ---------------------------------------------------------------- variants from shapes
@pytest.mark.parametrize('size,name,configs', [
    ((1, 26, 8), 'MTU1', ['mtu1_dvd', 'mtu1_gopro', 'mtu1_reds']),
    ((2, 26, 8), 'MTU2', ['mtu2_dvd', 'mtu2_gopro', 'mtu2_hp_dvd', 'mtu2_hp_gopro',
                          'mtu2_hp_reds', 'mtu2_reds']),
    ((4, 26, 8), 'MTU4', ['mtu4_dvd', 'mtu4_gopro', 'mtu4_reds']),
    ((10, 26, 8), 'MTU10', ['mtu10_dvd', 'mtu10_gopro', 'mtu10_reds']),
    ((10, 48, 6), 'MTU10_L', ['mtu10_l_dvd', 'mtu10_l_gopro', 'mtu10_l_reds']),
])
def test_paper_variants_are_read_from_shapes(size, name, configs):
    units, ch, blocks = size
    for deblur in (True, False):
        conv = convert_official_state_dict(fake_released(units, ch, blocks, deblur=deblur))
        assert conv.arch.variant == name and conv.arch.deblur_layers == (deblur and units > 1)
        assert conv.configs == [f'configs/mtu/{c}.py' for c in configs]
        with torch.device('meta'):
            model = MODELS.build(dict(type='MTURestorer', backbone=dict(
                type='MTUNet', num_units=units, channels=ch, num_blocks=blocks,
                aux_outputs=deblur)))
        assert {k: tuple(v.shape) for k, v in conv.state_dict.items()} == \
            {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_match_every_unit_and_custom_sizes():
    conv = convert_official_state_dict(fake_released(4, 26, 8, matching=4))
    assert conv.arch.match_every_unit and conv.arch.variant is None and conv.configs == []
    conv = convert_official_state_dict(fake_released(3, 10, 2, deblur=False))
    assert conv.arch.variant is None and conv.configs == []
    assert conv.arch.backbone_cfg()['num_units'] == 3


def test_the_file_name_is_not_read(tmp_path, capsys):
    src = tmp_path / 'MTU2_DVD.pytorch'  # named MTU2, holds an MTU4
    torch.save(fake_released(4, 26, 8), src)
    assert convert_official_ckpt.main([str(src), str(tmp_path / 'x.pth')]) == 0
    out = capsys.readouterr().out
    assert 'MTU4: 4 units' in out and 'configs/mtu/mtu4_dvd.py' in out and 'mtu2_' not in out


# ---------------------------------------------------------------- all or nothing
def _bad(kind):
    state = fake_released(2, 6, 1)
    if kind == 'unmapped':
        state['Network.HGs.0.RBs.0.1.weight'] = torch.zeros(3)
        return state, 'Network.HGs.0.RBs.0.1.weight'
    if kind == 'missing':
        del state['Network.HGs.1.dec2.0.bias']
        return state, 'Network.HGs.1.dec2.0.bias'
    if kind == 'shape':
        state['Network.HGs.1.enc3.0.weight'] = torch.zeros(12, 6, 5, 5)
        return state, 'Network.HGs.1.enc3.0.weight (12, 6, 5, 5) (needs (12, 6, 3, 3))'
    if kind == 'base_conv':  # the tensor that also shows ch: named, not the others
        state['Network.base_conv.0.weight'] = torch.zeros(5, 3, 3, 3)
        return state, ('1 tensor does not fit the variant read from the file (2 units, ch 6, '
                       '1 residual block, matching in the first unit only, with the '
                       'training-only deblur layers): '
                       'Network.base_conv.0.weight (5, 3, 3, 3) (needs (6, 3, 3, 3))')
    if kind == 'base_kernel':
        state['Network.base_conv.0.weight'] = torch.zeros(6, 3, 5, 5)
        return state, 'Network.base_conv.0.weight (6, 3, 5, 5) (needs (6, 3, 3, 3))'
    if kind == 'dtype':
        state['Network.out.bias'] = torch.zeros(3, dtype=torch.int64)
        return state, 'Network.out.bias'
    if kind == 'gap':
        state = OrderedDict((k.replace('HGs.1.', 'HGs.2.'), v) for k, v in state.items())
        return state, 'units (Network.HGs.<i>) are numbered [0, 2]: number 1 is missing'
    if kind == 'motion':
        state['Network.motion_layer.1.0.weight'] = torch.zeros(12, 6, 5, 5)
        state['Network.motion_layer.1.0.bias'] = torch.zeros(12)
        state['Network.motion_layer.2.0.weight'] = torch.zeros(12, 6, 5, 5)
        state['Network.motion_layer.2.0.bias'] = torch.zeros(12)
        return state, '3 motion layers for 2 units'
    raise ValueError(kind)


@pytest.mark.parametrize('kind', ['unmapped', 'missing', 'shape', 'base_conv', 'base_kernel',
                                  'dtype', 'gap', 'motion'])
def test_bad_files_stop_the_conversion_naming_the_tensor(tmp_path, capsys, kind):
    state, named = _bad(kind)
    with pytest.raises(OfficialCheckpointError, match=re.escape(named)):
        convert_official_state_dict(state)
    src, dst = tmp_path / 'bad.pytorch', tmp_path / 'out.pth'
    torch.save(state, src)
    assert convert_official_ckpt.main([str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1 and str(src) in err
    assert not dst.exists() and os.listdir(tmp_path) == ['bad.pytorch']  # nothing written
    # the tools' loader refuses it the same way, in one line
    with pytest.raises(CheckpointError, match='does not convert'):
        init_restorer(tiny_config(tmp_path / 'c.py', read_architecture(fake_released(2, 6, 1))),
                      str(src))


def test_one_tensor_is_counted_in_the_singular():
    state, _ = _bad('missing')
    with pytest.raises(OfficialCheckpointError, match=r'^1 tensor is missing for the variant'):
        convert_official_state_dict(state)
    state, _ = _bad('unmapped')
    with pytest.raises(OfficialCheckpointError, match=r'^1 tensor has no counterpart in'):
        convert_official_state_dict(state)


def test_converter_names_a_folder_given_as_the_source(tmp_path, capsys):
    (tmp_path / 'MTU2_DVD.pytorch').mkdir()
    dst = tmp_path / 'out.pth'
    assert convert_official_ckpt.main([str(tmp_path / 'MTU2_DVD.pytorch'), str(dst)]) == 2
    err = capsys.readouterr().err
    assert err == f'error: {tmp_path / "MTU2_DVD.pytorch"}: is a folder, not a checkpoint file\n'
    assert not dst.exists()


def test_converter_refuses_to_overwrite(tmp_path, capsys):
    src = tmp_path / 'MTU.pytorch'
    torch.save(fake_released(1, 4, 1), src)
    before = src.read_bytes()
    link = tmp_path / 'link.pth'
    link.symlink_to(src)
    for dst in (src, link):
        assert convert_official_ckpt.main([str(src), str(dst)]) == 2
        assert 'is the input' in capsys.readouterr().err
    assert src.read_bytes() == before
    (tmp_path / 'taken.pth').write_bytes(b'keep')
    assert convert_official_ckpt.main([str(src), str(tmp_path / 'taken.pth')]) == 2
    assert '--overwrite' in capsys.readouterr().err
    assert (tmp_path / 'taken.pth').read_bytes() == b'keep'
    assert convert_official_ckpt.main([str(src), str(tmp_path / 'taken.pth'),
                                       '--overwrite']) == 0
    # not a released file: our own checkpoint, or garbage
    assert convert_official_ckpt.main([str(tmp_path / 'taken.pth'), str(tmp_path / 'y')]) == 2
    assert 'this toolkit already' in capsys.readouterr().err
    (tmp_path / 'junk.pytorch').write_bytes(b'junk')
    assert convert_official_ckpt.main([str(tmp_path / 'junk.pytorch'), str(tmp_path / 'y')]) == 2
    err = capsys.readouterr().err
    assert 'junk.pytorch' in err and err.count('\n') == 1


def _one_error_line(capsys, *named):
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    assert 'weights_only=False' not in err and 'arbitrary code' not in err, err
    for part in named:
        assert part in err, err
    return err


def test_converter_makes_the_missing_folders(tmp_path, capsys, monkeypatch):
    # the documented commands write to work_dirs/ or checkpoints/, absent in a fresh checkout
    src = tmp_path / 'MTU.pytorch'
    torch.save(fake_released(1, 4, 1), src)
    monkeypatch.chdir(tmp_path)
    assert convert_official_ckpt.main([str(src), 'tmp/a/b/x.pth']) == 0
    assert 'wrote tmp/a/b/x.pth' in capsys.readouterr().out
    assert os.listdir(tmp_path / 'tmp' / 'a' / 'b') == ['x.pth']
    assert torch.load(tmp_path / 'tmp/a/b/x.pth', weights_only=True)['state_dict']
    # a file where a folder must be: one line, exit 2, nothing made
    (tmp_path / 'f').write_bytes(b'keep')
    for dst in ('f/x.pth', 'f/sub/x.pth'):
        assert convert_official_ckpt.main([str(src), dst]) == 2
        _one_error_line(capsys, f'{dst}: {tmp_path / "f"} is a file, not a folder')
    assert (tmp_path / 'f').read_bytes() == b'keep'
    (tmp_path / 'ro').mkdir()
    os.chmod(tmp_path / 'ro', 0o555)
    try:
        if not os.access(tmp_path / 'ro', os.W_OK):  # (root may write anyway)
            assert convert_official_ckpt.main([str(src), 'ro/new/x.pth']) == 2
            _one_error_line(capsys, f'the folder {tmp_path / "ro"} is not writable')
    finally:
        os.chmod(tmp_path / 'ro', 0o755)
    assert os.listdir(tmp_path / 'ro') == []


def test_converter_refuses_a_folder_path_and_cleans_up_partly_made_folders(tmp_path, capsys,
                                                                           monkeypatch):
    src = tmp_path / 'MTU.pytorch'
    torch.save(fake_released(1, 4, 1), src)
    monkeypatch.chdir(tmp_path)
    for dst, why in (('newdir/', 'names a folder; give the file to write'),
                     ('nf/../out.pth', 'nf (before its "..") is not a folder')):
        assert convert_official_ckpt.main([str(src), dst]) == 2
        _one_error_line(capsys, f'{dst}: {why}')
    # makedirs makes a/ and fails on the name below it: a/ is removed again
    dst = 'a/' + 'b' * 300 + '/x.pth'
    assert convert_official_ckpt.main([str(src), dst]) == 5
    _one_error_line(capsys, 'cannot be written')
    assert sorted(os.listdir(tmp_path)) == ['MTU.pytorch']
    os.mkfifo(tmp_path / 'fifo')
    assert convert_official_ckpt.main(['fifo', 'out.pth']) == 2
    _one_error_line(capsys, 'fifo: not a regular file')

    def unreadable(*args, **kwargs):
        raise PermissionError(13, 'Permission denied', str(src))

    monkeypatch.setattr(torch, 'load', unreadable)
    assert convert_official_ckpt.main([str(src), 'out.pth']) == 2
    err = _one_error_line(capsys, 'cannot be read as a weights-only PyTorch file: Permission '
                          'denied')
    assert 'corrupt' not in err


def test_converter_names_files_it_cannot_read(tmp_path, capsys):
    # worded as the tools' loader words them, without torch's advice to load with
    # weights_only=False (which runs the file's code)
    files = {'text': 'corrupt or not a checkpoint', 'object': 'the weights-only loading',
             'torchscript': 'TorchScript archives'}
    (tmp_path / 'text').write_text('hello\n')
    (tmp_path / 'object').write_bytes(pickle.dumps(subprocess.CompletedProcess([], 0)))
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 3, 1)), str(tmp_path / 'torchscript'))
    for name, why in files.items():
        assert convert_official_ckpt.main([str(tmp_path / name), str(tmp_path / 'y')]) == 2
        _one_error_line(capsys, f'{tmp_path / name}: cannot be read as a weights-only PyTorch '
                        'file: ', why)
    assert not (tmp_path / 'y').exists()


def test_converter_names_what_a_file_is(tmp_path, capsys):
    released = fake_released(1, 4, 1)
    toolkit = {'meta': {}, 'state_dict': {'backbone.base_conv.0.weight': torch.zeros(1)}}
    cases = {
        'toolkit': (toolkit, 'a checkpoint of this toolkit already'),
        'ddp': ({'state_dict': with_module(toolkit['state_dict'])},
                'a checkpoint of this toolkit already'),
        'other': ({'state_dict': {'Net.conv.weight': torch.zeros(1)}},
                  'no Network.base_conv.0.weight, neither at the top nor under one of its keys'),
        'tensors': ([torch.zeros(1)], 'it holds a list, not a state dict'),
        'two': ({'params': released, 'params_ema': released},
                "holds released state dicts under 2 keys ('params', 'params_ema'); save the one "
                'to convert on its own'),
    }
    for name, (obj, what) in cases.items():
        torch.save(obj, tmp_path / name)
        assert convert_official_ckpt.main([str(tmp_path / name), str(tmp_path / 'y')]) == 2
        _one_error_line(capsys, f'{tmp_path / name}: ', what)
    assert not (tmp_path / 'y').exists()


@pytest.mark.parametrize('key', ['state_dict', 'params'])
def test_converter_takes_a_released_state_dict_under_a_key(tmp_path, capsys, key):
    state = with_module(golden()[0])
    torch.save(state, tmp_path / 'plain.pytorch')
    torch.save({key: state, 'meta': {'epoch': 3}}, tmp_path / 'wrapped.pytorch')
    for name in ('plain', 'wrapped'):
        assert convert_official_ckpt.main([str(tmp_path / f'{name}.pytorch'),
                                           str(tmp_path / f'{name}.pth')]) == 0
    out = capsys.readouterr().out
    assert f"wrapped.pytorch (the state dict under {key!r}): 2 units" in out
    plain, wrapped = (torch.load(tmp_path / f'{n}.pth', weights_only=True)['state_dict']
                      for n in ('plain', 'wrapped'))
    assert plain.keys() == wrapped.keys()
    assert all(torch.equal(plain[k], wrapped[k]) for k in plain)


def test_detection():
    assert is_official_state_dict(fake_released(1, 4, 1))
    assert is_official_state_dict(with_module(fake_released(1, 4, 1)))
    assert not is_official_state_dict({'backbone.base_conv.0.weight': torch.zeros(1)})
    assert not is_official_state_dict({'state_dict': {}, 'meta': {}})
    assert not is_official_state_dict([1, 2])


# ---------------------------------------------------------------- one strict check
def test_only_the_training_only_layers_may_be_absent():
    state, _, _, _ = golden()
    model = restorer_for(read_architecture(state))
    full = convert_official_state_dict(state).state_dict
    assert check_state_dict(model, full, 'w') == set()
    test_time = convert_official_state_dict(without_deblur(state)).state_dict
    notes = []
    fitted = fit_state_dict(model, test_time, 'checkpoint c for config m', notes.append)
    assert fitted.keys() == model.state_dict().keys() and len(notes) == 1
    assert notes[0].startswith('checkpoint c for config m: ') and 'backbone.aux_convs.*' in notes[0]
    # some but not all of the auxiliary layers: refused
    partial = OrderedDict((k, v) for k, v in full.items() if k != 'backbone.aux_convs.0.bias')
    with pytest.raises(CheckpointLoadError, match='1 missing key .backbone.aux_convs.0.bias'):
        check_state_dict(model, partial, 'w')
    # a model built without them refuses a checkpoint that has them
    lean = MODELS.build(dict(type='MTURestorer', backbone=dict(
        read_architecture(state).backbone_cfg(), aux_outputs=False)))
    with pytest.raises(CheckpointLoadError, match='unexpected keys .backbone.aux_convs.0'):
        check_state_dict(lean, full, 'w')


# ---------------------------------------------------------------- the tools (issue: silent
# partial loading by the Runner; test.py reported metrics for another variant's checkpoint)
def _tool(args, cwd):
    return prewarmed.run([sys.executable] + args, cwd=cwd, env=tool_env(), capture_output=True,
                         text=True, timeout=300)


def _save_model_ckpt(path, units, optimizer=False):
    import mtu_toolkit.models  # noqa: F401
    model = MODELS.build(dict(type='MTURestorer', motion_loss=None, backbone=dict(
        type='MTUNet', num_units=units, channels=8, num_blocks=1,
        mc_head=dict(type='CorrelationMCHead', max_displacement=3))))
    ckpt = dict(meta=dict(iter=2, epoch=0), state_dict=model.state_dict())
    if optimizer:
        ckpt['optimizer'] = torch.optim.Adam(model.parameters()).state_dict()
        ckpt['message_hub'] = MessageHub.get_instance('ckpt_hub').state_dict()
    torch.save(ckpt, path)
    return str(path)


@pytest.fixture
def tiny_setup(tmp_path):
    data = make_dvd_tree(str(tmp_path / 'data'), videos=1, frames=3, size=(16, 16))
    return tmp_path, write_config(str(tmp_path / 'tiny.py'), data, max_iters=2)


def _one_line_architecture_error(proc, ckpt, cfg, what):
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith('error: ')]
    assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith(f'error: checkpoint {ckpt} for config {cfg}: the checkpoint is '
                               'of another architecture: ')
    assert what in lines[0]
    return lines[0]


@pytest.mark.slow
def test_test_tool_refuses_another_variant(tiny_setup):
    tmp_path, cfg = tiny_setup
    mtu2 = ['--cfg-options', 'model.backbone.num_units=2']
    # an MTU4-shaped checkpoint on the 2-unit config: extra units
    ckpt4 = _save_model_ckpt(tmp_path / 'mtu4.pth', 4)
    proc = _tool([os.path.join(ROOT, 'tools', 'test.py'), cfg, ckpt4, '--work-dir',
                  str(tmp_path / 'w')] + mtu2, tmp_path)
    _one_line_architecture_error(proc, ckpt4, cfg, 'architecture: 4 units in the checkpoint, 2 in '
                                 'the config; 36 unexpected keys (backbone.aux_convs.1.')
    assert not (tmp_path / 'w' / 'test_results.json').exists()
    # an MTU1 checkpoint on the 2-unit config: a unit would keep its initial weights
    ckpt1 = _save_model_ckpt(tmp_path / 'mtu1.pth', 1)
    proc = _tool([os.path.join(ROOT, 'tools', 'test.py'), cfg, ckpt1, '--work-dir',
                  str(tmp_path / 'w')] + mtu2, tmp_path)
    # (the auxiliary layer it lacks too is no excuse: a whole unit is missing)
    _one_line_architecture_error(proc, ckpt1, cfg, '16 missing keys (backbone.units.1.')


def test_test_tool_takes_a_released_file(tiny_setup):
    tmp_path, cfg = tiny_setup
    state, _, _, _ = golden()
    src = tmp_path / 'MTU_tiny.pytorch'
    torch.save(without_deblur(state), src)
    proc = _tool([os.path.join(ROOT, 'tools', 'test.py'), cfg, str(src), '--work-dir',
                  str(tmp_path / 'w'), '--cfg-options', 'model.backbone.num_units=2',
                  'model.backbone.channels=6', 'model.backbone.mc_head.max_displacement=10'],
                 tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert log.count("converted to this toolkit's layout") == 1
    assert log.count('no auxiliary deblur layers') == 1
    report = json.loads((tmp_path / 'w' / 'test_results.json').read_text())
    assert report['overall']['frames'] == 3


@pytest.mark.slow
def test_train_tool_refuses_another_variant(tiny_setup):
    tmp_path, cfg = tiny_setup
    train = [os.path.join(ROOT, 'tools', 'train.py'), cfg, '--work-dir', str(tmp_path / 'w')]
    # --resume with another variant's training checkpoint: the architecture, not the optimiser
    ckpt2 = _save_model_ckpt(tmp_path / 'mtu2.pth', 2, optimizer=True)
    proc = _tool(train + ['--resume', ckpt2], tmp_path)
    _one_line_architecture_error(proc, ckpt2, cfg, '18 unexpected keys (backbone.aux_convs.0.')
    assert 'parameter group' not in proc.stderr
    # load_from: the same check
    proc = _tool(train + ['--cfg-options', f'load_from={ckpt2}'], tmp_path)
    _one_line_architecture_error(proc, ckpt2, cfg, '18 unexpected keys (backbone.aux_convs.0.')
    assert not list((tmp_path / 'w').glob('iter_*.pth'))  # nothing trained


def test_resume_from_a_released_file_points_to_load_from(tiny_setup):
    tmp_path, cfg = tiny_setup
    src = tmp_path / 'MTU1_tiny.pytorch'  # the variant of the config: it loads, but cannot
    torch.save(fake_released(1, 8, 1), src)  # be resumed from
    proc = _tool([os.path.join(ROOT, 'tools', 'train.py'), cfg, '--work-dir',
                  str(tmp_path / 'w'), '--resume', str(src)], tmp_path)
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert 'cannot resume from it' in proc.stderr and 'load_from' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_converter_on_a_full_disk_says_so_and_leaves_nothing(tmp_path):
    # torch.save reported it as two chained RuntimeError tracebacks (exit 1)
    from tiny_data import file_size_limit
    src = tmp_path / 'MTU.pytorch'
    torch.save(fake_released(1, 4, 1), src)
    out = tmp_path / 'out'
    out.mkdir()
    tool = os.path.join(ROOT, 'tools', 'convert_official_ckpt.py')
    for dst in (out / 'x.pth', out / 'new' / 'deeper' / 'x.pth'):  # folders made are removed
        proc = prewarmed.run([sys.executable, tool, str(src), str(dst)],
                             capture_output=True, text=True, timeout=300,
                             preexec_fn=file_size_limit(1024))
        assert proc.returncode == 5, proc.stderr[-2000:]
        assert proc.stderr == f'error: {dst}: cannot be written (File too large)\n'
        assert os.listdir(out) == []
