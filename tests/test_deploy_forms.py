"""The inference forms derived from MTUNet's own layers give the network's frames."""
import copy
import threading

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

import mtu_toolkit.models  # noqa: F401
from mtu_toolkit import memory
from mtu_toolkit.deploy import (DirectConv2d, direct_conv_isa, freeze_units, to_direct,
                                to_split)
from mtu_toolkit.models.backbones.detail_net import DetailNet
from mtu_toolkit.models.layers import conv
from mtu_toolkit.registry import MODELS

pytestmark = pytest.mark.usefixtures('one_thread')

#: every inference form, built on a copy of the network
FORMS = {'split': lambda net: to_split(copy.deepcopy(net)),
         'direct': lambda net: to_direct(copy.deepcopy(net)),
         'frozen': lambda net: freeze_units(copy.deepcopy(net))}


def tiny_net(num_units=2, num_blocks=1, **kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(type='MTUNet', num_units=num_units, channels=8,
                             num_blocks=num_blocks, kaiming_init=True, **kwargs)).eval()


def test_fused_network_concatenates_no_features():
    """The only ``cat`` left is the 15-channel input of inp_prev_conv (frames, not features)."""
    net = tiny_net()
    fused = FORMS['split'](net)
    window = torch.rand(1, 5, 3, 16, 24)

    class CatChannels(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.channels = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket == torch.ops.aten.cat:
                self.channels.append(out.shape[1])
            return out

    with torch.inference_mode():
        _, state = net(window, None, with_aux=False)
        with CatChannels() as ref:
            net(window, state, with_aux=False)
        with CatChannels() as got:
            fused(window, state)
    assert ref.channels == [15, 16, 16]  # inp_prev_conv's input, then 2ch per unit
    assert got.channels == [15]


@pytest.mark.parametrize('options', [
    dict(), dict(match_every_unit=True), dict(mc_head=dict(type='none')),
    dict(structure_injection=False, match_every_unit=True), dict(motion_layer=False),
    dict(residual=False, num_units=3), dict(mc_head=dict(type='fan')),
    dict(mc_head=dict(type='flow'))], ids=str)
@pytest.mark.parametrize('form', list(FORMS))
def test_every_form_matches_mtunet_over_a_clip(options, form):
    net = tiny_net(**options)
    fused = FORMS[form](net)
    torch.manual_seed(1)
    state_ref = state = None
    with torch.inference_mode():
        for _ in range(3):  # the first frame (no state) and two carrying the state
            window = torch.rand(1, 5, 3, 16, 24)
            ref, state_ref = net(window, state_ref, with_aux=False)
            out, state = fused(window, state)
            torch.testing.assert_close(out['out'], ref['out'], rtol=0, atol=2e-5)
            torch.testing.assert_close(state.feat, state_ref.feat, rtol=0, atol=2e-5)
            assert len(state.motion) == len(state_ref.motion)
            for m, m_ref in zip(state.motion, state_ref.motion):
                assert (m is None) == (m_ref is None)
                if m is not None:
                    torch.testing.assert_close(m, m_ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize('form', list(FORMS))
def test_one_warp_per_displacement_and_the_state_survives_the_next_frame(form):
    """With matching only in the first unit, the units share one warp of the previous
    feature; the units' reused buffers never hold the recurrent state."""
    calls = {}
    for every_unit in (False, True):
        fused = FORMS[form](tiny_net(num_units=4, match_every_unit=every_unit))
        warp = fused.mc_head.warp
        counted = []
        fused.mc_head.warp = lambda *args: counted.append(1) or warp(*args)
        with torch.inference_mode():
            _, state = fused(torch.rand(1, 5, 3, 16, 24))
            counted.clear()
            _, state2 = fused(torch.rand(1, 5, 3, 16, 24), state)
            calls[every_unit] = len(counted)
            kept = state2.feat.clone()
            fused(torch.rand(1, 5, 3, 16, 24), state2)
        torch.testing.assert_close(state2.feat, kept, rtol=0, atol=0)
    assert calls == {False: 1, True: 3}


def test_direct_frames_reuse_their_large_outputs(monkeypatch):
    """Past the first frames, every output the direct form does not write into a reused buffer
    comes from the recycled pool (a fresh large tensor page-faults), and the pool stops
    growing. RECYCLE_BYTES is lowered so that the tiny network's outputs count as large."""
    if not direct_conv_isa():
        pytest.skip('the direct kernels do not run on this CPU')
    monkeypatch.setattr(memory, 'RECYCLE_BYTES', 0)
    monkeypatch.setattr(memory, '_POOLS', threading.local())
    fused = FORMS['direct'](tiny_net(num_units=3))
    outputs = []
    hooks = [m.register_forward_hook(lambda m, args, out: outputs.append((m, out.data_ptr())))
             for m in fused.modules() if isinstance(m, DirectConv2d)]
    state, pools = None, []
    with torch.inference_mode():
        for _ in range(4):
            outputs.clear()
            _, state = fused(torch.rand(1, 5, 3, 16, 24), state)
            pools.append([t.data_ptr() for t in memory._thread_pool().tensors])
    for h in hooks:
        h.remove()
    assert pools[1] == pools[2] == pools[3] and pools[3]
    recycled = [ptr for m, ptr in outputs if not m.reuse_output]
    assert recycled and all(ptr in pools[3] for ptr in recycled)


@pytest.mark.parametrize('num_blocks', [0, 1, 3])
def test_direct_units_write_dead_residuals_over(num_blocks):
    """The direct form's detail networks write every residual block's result but the first's
    over its input, the long skip over f3 and dec1 over f2: frames bit-identical to the same
    form writing fresh buffers, the input window untouched, and nothing overwritten while
    autograd records (the eager layers then need their inputs for the backward pass)."""
    if not direct_conv_isa():
        pytest.skip('the direct kernels do not run on this CPU')
    net = tiny_net(num_units=2, num_blocks=num_blocks)
    over, fresh = FORMS['direct'](net), FORMS['direct'](net)
    assert all(u.overwrite_residuals for u in over.units)
    for u in fresh.units:
        u.overwrite_residuals = False
    writes = []
    for name, m in over.units[0].named_modules():
        if isinstance(m, DirectConv2d):
            m.register_forward_hook(
                lambda m, args, out, name=name: writes.append(
                    (name, args[1] is not None and out.data_ptr() == args[1].data_ptr())))
    torch.manual_seed(2)
    states = [None, None]
    with torch.inference_mode():
        for _ in range(3):
            window = torch.rand(1, 5, 3, 16, 24)
            kept = window.clone()
            writes.clear()
            got, states[0] = over(window, states[0])
            ref, states[1] = fresh(window, states[1])
            assert torch.equal(got['out'], ref['out']) and torch.equal(window, kept)
            assert torch.equal(states[0].feat, states[1].feat)
    in_place = {name for name, same in writes if same}
    expected = {f'blocks.{i}.body.1.kernel' for i in range(1, num_blocks)} | {'dec1.kernel'}
    assert in_place == expected | ({'blocks_end.kernel'} if num_blocks else set())
    # with autograd recording, the eager network with the flag set gives the same gradients
    net.units[0].overwrite_residuals = True
    x = torch.rand(1, 16, 16, 24, requires_grad=True)
    net.units[0](x).sum().backward()
    grad = x.grad.clone()
    net.units[0].overwrite_residuals = False
    x.grad = None
    net.units[0](x).sum().backward()
    assert torch.equal(x.grad, grad)


def test_direct_stages_run_every_convolution_on_the_kernels():
    """Every conv of the network (strided, transposed, the 15-channel input) is a DirectConv2d
    on this CPU's kernels, and the frame makes no ``cat`` at all."""
    if not direct_conv_isa():
        pytest.skip('the direct kernels do not run on this CPU')
    net = tiny_net(num_units=3, match_every_unit=True)
    fused = FORMS['direct'](net)
    convs = [m for m in fused.modules() if isinstance(m, DirectConv2d)]
    assert len(convs) == sum(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
                             for m in net.modules()) - len(net.aux_convs)
    assert all(c.isa == direct_conv_isa() for c in convs)
    assert fused.mc_head.reuse_warp_output and fused.mc_head.fast_normalize
    assert not net.mc_head.fast_normalize  # the form is built on a copy
    with torch.inference_mode():
        _, state = fused(torch.rand(1, 5, 3, 16, 24), None)

        class Ops(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.names = []

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                self.names.append(func.overloadpacket.__name__)
                return func(*args, **(kwargs or {}))

        with Ops() as ops:
            fused(torch.rand(1, 5, 3, 16, 24), state)
    assert 'cat' not in ops.names and not any('conv' in n for n in ops.names)


@pytest.mark.parametrize('form', ['split', 'direct'])
def test_forms_keep_the_keys_and_the_auxiliary_outputs(form):
    net = tiny_net()
    fused = FORMS[form](net)
    assert fused.state_dict().keys() == net.state_dict().keys()
    window = torch.rand(1, 5, 3, 16, 24)
    with torch.inference_mode():
        ref, _ = net(window, None, with_aux=True)
        got, _ = fused(window, None, with_aux=True)
    assert len(got['aux_outs']) == len(ref['aux_outs']) == 1
    torch.testing.assert_close(got['aux_outs'][0], ref['aux_outs'][0], rtol=0, atol=2e-5)


class DeeperDetailNet(DetailNet):
    """A detail network changed in one place: one more convolution on its output."""

    def __init__(self, channels=26, num_blocks=8):
        super().__init__(channels, num_blocks)
        self.refine = conv(channels, channels)

    def forward(self, *inputs):
        out = super().forward(*inputs)
        return self.refine(out, residual=out)


def test_a_changed_detail_network_is_one_edit_every_form_follows():
    """Changing the detail network needs no change in deploy/: every form (and the export)
    is derived from the model's own layers and forward."""
    from mtu_toolkit.deploy import run_step_module
    from mtu_toolkit.deploy.export import FrameStep
    net = tiny_net(num_units=3)
    torch.manual_seed(3)
    net.units = nn.ModuleList(DeeperDetailNet(8, 1) for _ in range(3))
    clip = [torch.rand(1, 5, 3, 16, 24) for _ in range(3)]
    with torch.inference_mode():
        outs, state = [], None
        for window in clip:
            out, state = net(window, state)
            outs.append(out['out'])
        for name, make in FORMS.items():
            fused, state = make(net), None
            if name == 'direct' and direct_conv_isa():
                assert isinstance(fused.units[0].refine.kernel, DirectConv2d)
            for window, ref in zip(clip, outs):
                out, state = fused(window, state)
                torch.testing.assert_close(out['out'], ref, rtol=0, atol=2e-5, msg=name)
    restorer = MODELS.build(dict(type='MTURestorer', backbone=dict(
        type='MTUNet', num_units=3, channels=8, num_blocks=1))).eval()
    restorer.backbone = net
    frames = torch.rand(3, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(run_step_module(FrameStep(restorer), frames),
                                   restorer.infer_clip(frames), rtol=0, atol=0)


def test_compile_leaves_other_backbones_as_they_are():
    import torch.nn as nn

    from mtu_toolkit.deploy import optimize_for_inference

    class OtherBackbone(nn.Module):  # a plugin's backbone with units, not an MTUNet
        def __init__(self):
            super().__init__()
            self.units = nn.ModuleList([nn.Conv2d(3, 3, 3, padding=1)])

    restorer = MODELS.build(dict(type='MTURestorer', backbone=dict(
        type='MTUNet', num_units=1, channels=8, num_blocks=1))).eval()
    restorer.backbone = OtherBackbone()
    with pytest.warns(UserWarning, match='OtherBackbone'):
        assert optimize_for_inference(restorer, compile=True) is restorer
