"""The direct CPU convolution kernels (csrc/cpu/conv_cpu.cpp) against PyTorch's convolutions."""
import os
import threading

import pytest
import torch
import torch.nn as nn

from mtu_toolkit import memory
from mtu_toolkit.deploy import direct_conv as conv_direct
from mtu_toolkit.deploy import DirectConv2d, conv2d_direct_reference, direct_conv_isa
from mtu_toolkit.deploy.conv_engine import conv_ext as ext

pytestmark = pytest.mark.skipif(not direct_conv_isa(),
                                reason='the direct kernels do not run on this CPU / build')


def cpu_isas():
    """The instruction sets this CPU can run the kernels with ('best' = AVX-512 where present)."""
    isas = ['best']
    if direct_conv_isa() == 'avx512':
        isas.append('avx2')  # AVX-512 CPUs have AVX2 too: run its kernels as well
    return isas


@pytest.fixture(params=cpu_isas())
def isa(request):
    ext.conv_direct_use_isa(request.param)
    yield direct_conv_isa()
    ext.conv_direct_use_isa('best')


def check(layer, inputs, relu=True, residual=None, atol=2e-5, winograd=False):
    direct = DirectConv2d(layer, relu=relu, winograd=winograd)
    assert direct.isa, 'the layer should run on the kernels'
    assert direct.winograd == winograd
    with torch.inference_mode():
        got = direct(inputs, residual=residual)
        ref = layer(torch.cat(inputs, 1))
        ref = torch.relu(ref) if relu else ref
        ref = ref if residual is None else ref + residual
    assert got.shape == ref.shape and got.is_contiguous()
    if winograd:  # rounds to a few 1e-6 of the output's scale (F(4x4): up to ~6e-6)
        atol = max(atol, 1e-5 * ref.abs().max().item())
    torch.testing.assert_close(got, ref, rtol=0, atol=atol)
    return got


@pytest.mark.parametrize('cins, cout, k, stride, pad, size', [
    ([26, 26], 26, 5, 1, 2, (37, 53)),   # the units' first conv, split in two inputs
    ([52], 52, 3, 1, 1, (18, 33)),       # residual block
    ([3] * 5, 26, 3, 1, 1, (20, 21)),    # inp_prev_conv over the five frames
    ([26], 3, 3, 1, 1, (9, 40)),         # out_conv (3 channels: one short block)
    ([26], 26, 3, 2, 1, (36, 70)),       # enc2
    ([26], 52, 3, 2, 1, (35, 69)),       # enc3, odd size
    ([26], 52, 5, 4, 1, (37, 71)),       # motion layer
    ([7, 5], 11, 5, 1, 2, (5, 7)),       # image smaller than a vector
    ([4], 30, 3, 1, 1, (3, 100)),        # 30 channels: blocks with padding channels
    ([5], 13, 3, 1, 1, (6, 20)),         # 13 channels: AVX2's last block holds one
    ([16], 40, 5, 2, 2, (11, 13)),
    ([2], 9, 3, 1, 0, (6, 9)),           # 'valid' padding
    # wide rows: strips wholly inside the row, packed with plain loads (the others masked)
    ([26], 26, 3, 1, 1, (4, 200)),
    ([6], 26, 3, 2, 1, (5, 260)),
    ([8], 12, 5, 4, 1, (9, 520)),
    # 3x3/4: no halo column past a strip, the packing's last vector is a whole one
    ([6], 10, 3, 4, 1, (9, 130)),
    ([6], 10, 3, 4, 1, (5, 520)),
], ids=str)
def test_conv_matches_pytorch(isa, cins, cout, k, stride, pad, size):
    layer = nn.Conv2d(sum(cins), cout, k, stride, pad)
    inputs = [torch.randn(2, c, *size) for c in cins]
    out = check(layer, inputs)
    residual = torch.randn_like(out)
    check(layer, inputs, relu=False, residual=residual)


@pytest.mark.parametrize('cins, cout, k, pad, size', [
    ([26, 26], 26, 5, 2, (37, 53)),   # the units' first conv, split in two inputs
    ([52], 52, 3, 1, (18, 33)),       # residual block
    ([52], 52, 3, 1, (45, 80)),       # several strips and tile rows
    ([3] * 5, 26, 3, 1, (20, 21)),    # few channels, forced: odd sizes (a half tile)
    ([26], 3, 3, 1, (9, 40)),         # out_conv
    ([7, 5], 11, 5, 2, (5, 7)),       # image smaller than a vector of tiles
    ([4], 30, 3, 1, (1, 100)),        # one row: a tile partly outside
    ([5], 13, 3, 1, (6, 20)),         # 13 channels: AVX2's last block holds one
    ([8], 8, 5, 2, (7, 70)),          # 7 rows, 70 columns: tiles of 4 partly outside
    ([16], 20, 5, 0, (9, 300)),       # 'valid' padding, wide
    ([6], 40, 5, 1, (12, 13)),        # padding 1 of a 5x5
    ([6], 26, 3, 1, (9, 600)),        # wide: strips wholly inside the row (plain loads)
], ids=str)
@pytest.mark.parametrize('tile', [2, 4])
def test_winograd_matches_pytorch(isa, cins, cout, k, pad, size, tile):
    layer = nn.Conv2d(sum(cins), cout, k, 1, pad)
    inputs = [torch.randn(2, c, *size) for c in cins]
    out = check(layer, inputs, winograd=tile)
    residual = torch.randn_like(out)
    check(layer, inputs, relu=False, residual=residual, winograd=tile)


def test_winograd_is_chosen_for_wide_stride_1_layers():
    def chosen(layer, winograd='auto'):
        return DirectConv2d(layer, relu=True, winograd=winograd).winograd
    assert chosen(nn.Conv2d(52, 52, 3, padding=1)) == conv_direct.WINOGRAD_TILE[3]
    assert chosen(nn.Conv2d(52, 26, 5, padding=2)) == conv_direct.WINOGRAD_TILE[5]
    assert chosen(nn.Conv2d(52, 26, 5, padding=2), winograd=2) == 2
    assert chosen(nn.Conv2d(26, 3, 3, padding=1)) and chosen(nn.Conv2d(15, 26, 3, padding=1))
    assert not chosen(nn.Conv2d(4, 8, 3, padding=1))      # transforms shared by too few
    assert chosen(nn.Conv2d(3, 26, 3, padding=1))         # base_conv: the frame's 3 channels
    assert not chosen(nn.Conv2d(2, 26, 3, padding=1))     # below WINOGRAD_MIN_INPUTS
    assert not chosen(nn.Conv2d(26, 52, 3, 2, 1))         # stride 2
    assert not chosen(nn.Conv2d(52, 52, 3, padding=1), winograd=False)
    assert chosen(nn.Conv2d(4, 8, 3, padding=1), winograd=True) == conv_direct.WINOGRAD_TILE[3]
    # the transposed conv: as a 3x3 conv of its 4 output phases, F(4x4, 3x3) only
    assert chosen(nn.ConvTranspose2d(26, 26, 4, 2, 1)) == conv_direct.WINOGRAD_TILE['transposed']
    assert chosen(nn.ConvTranspose2d(52, 26, 4, 2, 1), winograd=4) == 4
    assert not chosen(nn.ConvTranspose2d(4, 8, 4, 2, 1))  # transforms shared by too few
    assert chosen(nn.ConvTranspose2d(4, 8, 4, 2, 1), winograd=True) == 4
    assert not chosen(nn.ConvTranspose2d(26, 26, 4, 2, 1), winograd=2)
    assert not chosen(nn.ConvTranspose2d(26, 26, 4, 2, 1), winograd=False)
    for bad in ('yes', 3):
        with pytest.raises(ValueError, match='winograd must be'):
            chosen(nn.Conv2d(4, 4, 3, padding=1), winograd=bad)
    assert 'winograd' in repr(DirectConv2d(nn.Conv2d(52, 52, 3, padding=1), relu=True))


def test_winograd_weight_and_flag_must_agree():
    layer = nn.Conv2d(16, 16, 3, padding=1)
    x = [torch.randn(1, 16, 8, 8)]
    wino = ext.conv_direct_pack(layer.weight.detach(), False, winograd=2)
    plain = ext.conv_direct_pack(layer.weight.detach(), False)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match='packed weight'):
            ext.conv_direct(x, wino, None, None, 16, 1, 1, False, True)
        with pytest.raises(RuntimeError, match=r'packed weight.*winograd=2'):
            ext.conv_direct(x, plain, None, None, 16, 1, 1, False, True, winograd=2)
        with pytest.raises(RuntimeError, match='stride 2 and padding 1 are not supported'):
            ext.conv_direct(x, wino, None, None, 16, 2, 1, False, True, winograd=2)
        with pytest.raises(RuntimeError, match='not supported for a Winograd 1x1'):
            ext.conv_direct(x, wino, None, None, 16, 1, 1, False, True, winograd=4)
        with pytest.raises(RuntimeError, match='winograd must be the output tile'):
            ext.conv_direct(x, wino, None, None, 16, 1, 1, False, True, winograd=3)
    with pytest.raises(RuntimeError, match='winograd needs a 3x3 or 5x5'):
        ext.conv_direct_pack(torch.randn(4, 4, 7, 7), False, winograd=2)


@pytest.mark.parametrize('cin, cout, size', [(52, 26, (18, 33)), (26, 26, (7, 5)),
                                             (5, 3, (4, 17)), (8, 14, (1, 1)),
                                             (6, 10, (3, 150))], ids=str)  # wide: plain loads
def test_transposed_conv_matches_pytorch(isa, cin, cout, size):
    layer = nn.ConvTranspose2d(cin, cout, 4, 2, 1)
    x = [torch.randn(2, cin, *size)]
    out = check(layer, x)
    check(layer, x, residual=torch.randn_like(out))


@pytest.mark.parametrize('cins, cout, size', [
    ([26], 26, (37, 53)),       # dec2: 104 phase channels, blocks of 12 (AVX2: 6)
    ([52], 26, (18, 33)),       # dec1
    ([5], 3, (4, 17)),          # 12 phase channels: one block
    ([8], 14, (1, 1)),          # one pixel: a tile mostly outside
    ([6], 10, (3, 150)),        # wide: strips wholly inside the row
    ([40, 56], 48, (9, 70)),    # MTU10-L's 96 channels in two inputs, 192 phase channels
    ([26], 26, (13, 600)),      # several strips of 2 x 16 tiles, 1200 output columns
], ids=str)
def test_transposed_conv_by_winograd_matches_pytorch(isa, cins, cout, size):
    """The 4x4 stride-2 transposed conv as a 3x3 conv of its 4 output phases by F(4x4, 3x3),
    with bias, ReLU and a residual, at odd sizes (tiles partly outside the input)."""
    layer = nn.ConvTranspose2d(sum(cins), cout, 4, 2, 1)
    x = [torch.randn(2, c, *size) for c in cins]
    out = check(layer, x, winograd=4)
    check(layer, x, relu=False, residual=torch.randn_like(out), winograd=4)


def test_transposed_winograd_weight_and_flag_must_agree():
    layer = nn.ConvTranspose2d(16, 8, 4, 2, 1)
    x = [torch.randn(1, 16, 6, 6)]
    wino = ext.conv_direct_pack(layer.weight.detach(), True, winograd=4)
    plain = ext.conv_direct_pack(layer.weight.detach(), True)
    assert wino.shape[1:3] == (36, 16) and wino.shape[0] * wino.shape[3] >= 4 * 8
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match='packed weight'):
            ext.conv_direct(x, wino, None, None, 8, 2, 1, True, True)
        with pytest.raises(RuntimeError, match=r'packed weight.*winograd=4'):
            ext.conv_direct(x, plain, None, None, 8, 2, 1, True, True, winograd=4)
        with pytest.raises(RuntimeError, match=r'runs Winograd F\(4x4, 3x3\) only .*winograd=2'):
            ext.conv_direct(x, wino, None, None, 8, 2, 1, True, True, winograd=2)
    with pytest.raises(RuntimeError, match=r'runs Winograd F\(4x4, 3x3\) only .*winograd=2'):
        ext.conv_direct_pack(layer.weight.detach(), True, winograd=2)


def test_no_bias_and_inputs_read_in_place():
    layer = nn.Conv2d(15, 8, 3, padding=1, bias=False)
    window = torch.randn(2, 5, 3, 12, 20)  # (N, 5, 3, H, W): window[:, i] has batch stride 5*3*H*W
    frames = [window[:, i] for i in range(5)]
    assert not frames[1].is_contiguous()
    check(layer, frames)


def test_out_buffer_and_in_place_residual():
    layer = nn.Conv2d(6, 6, 3, padding=1)
    direct = DirectConv2d(layer, relu=True)
    x = torch.randn(1, 6, 10, 40)
    with torch.inference_mode():
        ref = torch.relu(layer(x)) + x
        buf = torch.empty(1, 6, 10, 40)
        assert direct([x], residual=x, out=buf) is buf
        torch.testing.assert_close(buf, ref, rtol=0, atol=2e-5)
        h = torch.relu(layer(x))
        y = x.clone()
        direct([h], residual=y, out=y)  # x + f(h) in place: each element read before written
        torch.testing.assert_close(y, torch.relu(layer(h)) + x, rtol=0, atol=2e-5)
        with pytest.raises(RuntimeError, match='must not share memory with the inputs'):
            direct([x], out=x)
        with pytest.raises(RuntimeError, match='out must be a contiguous'):
            direct([x], out=torch.empty(1, 6, 10, 41))


def test_reused_output_buffer():
    direct = DirectConv2d(nn.Conv2d(4, 4, 3, padding=1), relu=True, reuse_output=True)
    with torch.inference_mode():
        a = direct([torch.randn(1, 4, 8, 16)])
        b = direct([torch.randn(1, 4, 8, 16)])
        c = direct([torch.randn(1, 4, 8, 20)])  # another size: a new buffer
    assert a.data_ptr() == b.data_ptr() and c.shape == (1, 4, 8, 20)


def test_large_outputs_are_recycled_only_when_nothing_holds_them(monkeypatch):
    """Outputs of RECYCLE_BYTES or more reuse an earlier output (of any layer) that nothing
    references any more (no Python reference, no view), else get a fresh tensor; the pool
    keeps at most POOL_BYTES of them."""
    out_bytes = 4 * 8 * 16 * 4
    monkeypatch.setattr(memory, 'RECYCLE_BYTES', 0)
    monkeypatch.setattr(memory, 'POOL_BYTES', 3 * out_bytes)
    monkeypatch.setattr(memory, '_POOLS', threading.local())
    layer, other_layer = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
    direct, other = DirectConv2d(layer, relu=False), DirectConv2d(other_layer, relu=False)
    xs = [torch.randn(1, 4, 8, 16) for _ in range(6)]
    with torch.inference_mode():
        a = direct([xs[0]])
        a_ptr = a.data_ptr()
        b = direct([xs[1]])  # a is held: a new buffer
        assert b.data_ptr() != a_ptr
        view = a[:, :2]
        del a
        c = direct([xs[2]])  # a's storage is still seen through a view, b is held
        c_ptr = c.data_ptr()
        assert c_ptr not in (a_ptr, b.data_ptr())
        del view, c
        d = other([xs[3]])  # another layer of the same output shape takes c's (newest) buffer
        assert d.data_ptr() == c_ptr
        torch.testing.assert_close(d, other_layer(xs[3]), rtol=0, atol=2e-5)
        for x, out in ((xs[1], b),):
            torch.testing.assert_close(out, layer(x), rtol=0, atol=2e-5)
        e = direct([xs[4]])  # a's buffer, free since its view went
        assert e.data_ptr() == a_ptr
        # all three held: a fourth buffer, and the oldest leaves the pool (3 buffers' bytes)
        f = direct([xs[5]])
        assert f.data_ptr() not in (a_ptr, b.data_ptr(), c_ptr)
        assert len(memory._thread_pool().tensors) == 3 and memory._thread_pool().tensors[0] is f
        torch.testing.assert_close(f, layer(xs[5]), rtol=0, atol=2e-5)


#: the kernels: direct, Winograd, the transposed conv's own and the transposed by Winograd
KINDS = ['direct', 'winograd', 'transposed', 'transposed winograd']


def layer_of_kind(kind, cin, cout, size, transposed_size):
    """(layer, its DirectConv2d with ReLU, an input) for a kernel kind: a 3x3 conv run directly
    or by Winograd F(4x4) on a ``size`` input, or the 4x4/2 transposed conv (by its kernel or
    by Winograd) on a ``transposed_size`` one."""
    if kind.startswith('transposed'):
        layer, x = nn.ConvTranspose2d(cin, cout, 4, 2, 1), torch.rand(1, cin, *transposed_size)
    else:
        layer, x = nn.Conv2d(cin, cout, 3, padding=1), torch.rand(1, cin, *size)
    winograd = 4 if kind.endswith('winograd') else False
    return layer, DirectConv2d(layer, relu=True, winograd=winograd), x


@pytest.mark.parametrize('kind', KINDS)
def test_every_kernel_writes_over_its_residual_exactly(kind):
    """out=residual (the detail network's dead residuals): each element is read before it is
    written, so the result is the one a separate buffer gets, to the bit, masked edges included
    (widths that are no multiple of a vector)."""
    torch.manual_seed(0)
    layer, direct, x = layer_of_kind(kind, 16, 16, (13, 37), (7, 19))
    with torch.inference_mode():
        separate = direct([x], residual=torch.full_like(direct([x]), 0.5))
        separate = separate.clone()
        res = torch.full_like(separate, 0.5)
        assert direct([x], residual=res, out=res) is res
    assert torch.equal(res, separate)


@pytest.mark.parametrize('kind', KINDS)
def test_outputs_larger_than_the_cache_are_streamed_exactly(kind):
    """Outputs over 32 MB are written with non-temporal stores where a whole aligned vector is
    stored (rows of 1683 floats: both kinds of stores in every row)."""
    torch.manual_seed(0)
    layer, direct, x = layer_of_kind(kind, 2, 3, (1680, 1683), (840, 842))
    with torch.inference_mode():
        got = direct([x])
        ref = torch.relu(layer(x))
    assert got.numel() * 4 > 32 << 20
    atol = 1e-5 * ref.abs().max().item() if kind.endswith('winograd') else 2e-5
    torch.testing.assert_close(got, ref, rtol=0, atol=atol)


@pytest.mark.parametrize('kind', KINDS)
def test_outputs_do_not_depend_on_how_the_rows_are_split(isa, kind):
    """A call's rows go to the threads in contiguous ranges, each walked in bands of rows
    (every band packs its first input rows afresh): the output is the same to the bit with 1,
    2 or 3 threads (other ranges, other band boundaries), strided layers included."""
    torch.manual_seed(0)
    layers = [layer_of_kind(kind, 10, 13, (43, 70), (21, 35))]
    if kind == 'direct':
        strided = nn.Conv2d(10, 13, 3, 2, 1)
        layers.append((strided, DirectConv2d(strided, relu=True), torch.rand(2, 10, 61, 90)))
    saved = torch.get_num_threads()
    try:
        for layer, direct, x in layers:
            outs = []
            for threads in (1, 2, 3):
                torch.set_num_threads(threads)
                with torch.inference_mode():
                    outs.append(direct([x]))
            assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
            atol = 1e-4 if kind.endswith('winograd') else 2e-5
            torch.testing.assert_close(outs[0], torch.relu(layer(x)), rtol=0, atol=atol)
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize('kind', KINDS)
def test_phase_clock_counts_each_kernels_phases(isa, kind):
    """``conv_phase_timing``: off by default (nothing counted), on it counts every phase a
    kernel has ([pack, input transform, products, epilogue]; only Winograd transforms its
    input), and reading with reset sets the counts back to 0."""
    torch.manual_seed(0)
    layer, direct, x = layer_of_kind(kind, 6, 5, (48, 80), (24, 40))
    with torch.inference_mode():
        ext.conv_phase_cycles(True)
        direct([x])
        assert ext.conv_phase_cycles(True) == [0, 0, 0, 0]
        ext.conv_phase_timing(True)
        try:
            got = direct([x])
            cycles = ext.conv_phase_cycles(False)
        finally:
            ext.conv_phase_timing(False)
    pack, transform, products, epilogue = cycles
    assert pack > 0 and products > 0 and epilogue > 0
    assert (transform > 0) == kind.endswith('winograd')
    assert ext.conv_phase_cycles(True) == cycles and ext.conv_phase_cycles() == [0, 0, 0, 0]
    atol = 1e-4 if kind.endswith('winograd') else 2e-5  # (the clock changes nothing computed)
    torch.testing.assert_close(got, torch.relu(layer(x)), rtol=0, atol=atol)


def test_bad_inputs_are_named():
    direct = DirectConv2d(nn.Conv2d(6, 4, 3, padding=1), relu=True)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match=r"inputs\[1\] must have inputs\[0\]'s batch"):
            direct([torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 9)])
        with pytest.raises(RuntimeError, match='packed weight'):
            direct([torch.randn(1, 5, 8, 8)])
        with pytest.raises(RuntimeError, match='residual must be'):
            direct([torch.randn(1, 6, 8, 8)], residual=torch.randn(1, 4, 8, 7))
        with pytest.raises(RuntimeError, match='float32'):
            ext.conv_direct([torch.randn(1, 6, 8, 8).double()], direct.packed, None, None, 4,
                            1, 1, False, True)


def test_falls_back_to_pytorch_where_the_kernels_do_not_apply():
    # autograd: the kernels have no backward, the reference has
    layer = nn.Conv2d(4, 4, 3, padding=1)
    direct = DirectConv2d(layer, relu=True)
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    direct([x]).sum().backward()
    assert x.grad is not None
    # a layer the kernels do not implement (dilation)
    dilated = DirectConv2d(nn.Conv2d(4, 4, 3, padding=2, dilation=2), relu=False)
    assert dilated.isa == '' and 'reference' in repr(dilated)
    with torch.inference_mode():
        torch.testing.assert_close(dilated([x.detach()]), dilated.reference_layer(x.detach()))


def test_reference_matches_pytorch_layers():
    x = [torch.randn(1, 3, 9, 11), torch.randn(1, 2, 9, 11)]
    conv = nn.Conv2d(5, 4, 5, 2, 1)
    ref = conv2d_direct_reference(x, conv.weight, conv.bias, relu=False, stride=2, padding=1)
    torch.testing.assert_close(ref, conv(torch.cat(x, 1)))
    deconv = nn.ConvTranspose2d(5, 4, 4, 2, 1)
    ref = conv2d_direct_reference(x, deconv.weight, deconv.bias, stride=2, padding=1,
                                  transposed=True)
    torch.testing.assert_close(ref, torch.relu(deconv(torch.cat(x, 1))))


def test_isa_choice_is_checked():
    with pytest.raises(RuntimeError, match='isa must be'):
        ext.conv_direct_use_isa('sse9')
    ext.conv_direct_use_isa('')
    try:
        assert conv_direct.direct_conv_isa() == ''
        assert DirectConv2d(nn.Conv2d(2, 2, 3, padding=1), relu=True).isa == ''
    finally:
        ext.conv_direct_use_isa('best')
    assert direct_conv_isa()


def cpu_vendor():
    """/proc/cpuinfo's vendor_id ('AuthenticAMD', 'GenuineIntel', ...), or None."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('vendor_id'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return None


def outputs_by_mode(setting, modes, call):
    """{mode: call()} with the engine's speed ``setting`` ('broadcasts', 'prefetch') set to each
    of ``modes`` in turn (``conv_direct_use_<setting>``), its default ('auto') again after."""
    outs = {}
    try:
        for mode in modes:
            getattr(ext, f'conv_direct_use_{setting}')(mode)
            assert getattr(ext, f'conv_direct_{setting}')() == mode
            with torch.inference_mode():
                outs[mode] = call()
    finally:
        getattr(ext, f'conv_direct_use_{setting}')('auto')
    return outs


@pytest.mark.skipif(direct_conv_isa() != 'avx512', reason='the broadcasts are AVX-512 kernels')
@pytest.mark.parametrize('cin, cout, k, stride, winograd', [
    (52, 26, 5, 1, 4),     # enc1: blocks of 13, strips of two vectors
    (52, 52, 3, 1, 4),     # residual block
    (15, 26, 3, 1, 2),     # F(2x2)
    (26, 52, 3, 2, 0),     # enc3, strided
    (26, 52, 5, 4, 0),     # motion layer
    (26, 26, 3, 1, 0),     # direct, stride 1
    (20, 96, 3, 1, 4),     # MTU10-L's 96 channels: blocks of 12
    (20, 11, 5, 1, 4),     # a block of 11
    (20, 10, 3, 2, 0),     # a block of 10
    (26, 3, 3, 1, 4),      # out_conv: strips of 7 vectors, the same code either way
    (26, 26, 4, 2, 4),     # dec2, transposed by Winograd: blocks of 12 phase channels
], ids=str)
def test_embedded_and_register_broadcasts_give_the_same_bits(cin, cout, k, stride, winograd):
    """The AVX-512 kernels of 10 to 13 output channels a block broadcast each weight either by
    every multiply-add (embedded) or once into a register, chosen by CPU: the same arithmetic,
    so the outputs are equal to the bit, and both match PyTorch."""
    torch.manual_seed(0)
    layer = (nn.ConvTranspose2d(cin, cout, 4, 2, 1) if k == 4
             else nn.Conv2d(cin, cout, k, stride, k // 2))
    x = torch.rand(1, cin, 29, 75)
    direct = DirectConv2d(layer, relu=True, winograd=winograd)
    assert direct.winograd == winograd
    outs = outputs_by_mode('broadcasts', ('embedded', 'registers'), lambda: direct([x]))
    assert torch.equal(outs['embedded'], outs['registers'])
    atol = 1e-5 * outs['embedded'].abs().max().item() if winograd else 2e-5
    torch.testing.assert_close(outs['embedded'], torch.relu(layer(x)), rtol=0, atol=atol)


def test_broadcast_choice_is_checked_and_follows_the_cpu():
    with pytest.raises(RuntimeError, match='broadcasts must be "auto", "embedded" or '
                                           '"registers", got "sometimes"'):
        ext.conv_direct_use_broadcasts('sometimes')
    ext.conv_direct_use_broadcasts('auto')
    # registers on AMD CPUs (measured faster on a Zen 5), embedded on others (an Intel Xeon)
    expected = {'AuthenticAMD': 'registers'}.get(cpu_vendor(), 'embedded')
    assert ext.conv_direct_broadcasts() == expected


@pytest.mark.parametrize('cin, cout, k, stride, winograd, residual', [
    (52, 52, 3, 1, 4, True),    # residual block: next rows, residual and output lines
    (52, 26, 5, 1, 4, False),   # enc1
    (26, 26, 3, 2, 0, False),   # enc2, strided
    (26, 3, 3, 1, 0, True),     # direct, stride 1, few output channels
    (26, 26, 4, 2, 4, False),   # dec2, transposed by Winograd
    (52, 26, 4, 2, 0, False),   # the transposed kernel
], ids=str)
def test_fetching_ahead_into_l1_or_l2_gives_the_same_bits(cin, cout, k, stride, winograd,
                                                         residual):
    """The kernels fetch their next input rows and output lines ahead into L1 (the default) or
    into L2 only: a speed choice, so the outputs are equal to the bit, and match PyTorch."""
    torch.manual_seed(0)
    layer = (nn.ConvTranspose2d(cin, cout, 4, 2, 1) if k == 4
             else nn.Conv2d(cin, cout, k, stride, k // 2))
    x = torch.rand(1, cin, 37, 83)
    with torch.inference_mode():
        ref = torch.relu(layer(x))
    res = torch.rand_like(ref) if residual else None
    direct = DirectConv2d(layer, relu=True, winograd=winograd)
    outs = outputs_by_mode('prefetch', ('l2', 'l1'), lambda: direct([x], residual=res))
    assert torch.equal(outs['l1'], outs['l2'])
    if res is not None:
        ref = ref + res
    atol = 1e-5 * ref.abs().max().item() if winograd else 2e-5
    torch.testing.assert_close(outs['l1'], ref, rtol=0, atol=atol)


def test_prefetch_choice_is_checked_and_defaults_to_l1():
    with pytest.raises(RuntimeError, match='prefetch must be "auto", "l1" or "l2", got "l3"'):
        ext.conv_direct_use_prefetch('l3')
    ext.conv_direct_use_prefetch('auto')
    assert ext.conv_direct_prefetch() == 'l1'
    from mtu_toolkit.deploy import direct_conv_prefetch
    assert direct_conv_prefetch() == ('l1' if direct_conv_isa() else '')


def test_a_missing_engine_is_said_where_its_kernels_would_run():
    """Without mtu_toolkit._conv_cpu (a failed build) on a CPU with AVX2 or AVX-512, one
    warning says so and names the package folder; the direct layers run PyTorch's convs."""
    import os.path as osp
    import subprocess
    import sys
    if torch.backends.cpu.get_cpu_capability() not in ('AVX2', 'AVX512'):
        pytest.skip('the engine would not run on this CPU anyway')
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    code = ('import sys, warnings; warnings.simplefilter("always"); '
            'sys.modules["mtu_toolkit._conv_cpu"] = None\n'
            'import mtu_toolkit.deploy as d\n'
            'assert d.direct_conv_isa() == ""\n')
    env = {k: v for k, v in os.environ.items() if k != 'MTU_SKIP_EXT'}
    proc = subprocess.run([sys.executable, '-c', code], env=dict(env, PYTHONPATH=root),
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count('ExtensionFallbackWarning') == 1, proc.stderr
    assert 'the CPU convolution kernels are not used because importing mtu_toolkit._conv_cpu ' \
           'failed' in proc.stderr
    assert f'(mtu_toolkit here is {osp.join(root, "mtu_toolkit")})' in proc.stderr


@pytest.mark.parametrize('count', [2, 3, 5])
@pytest.mark.parametrize('size', [(3, 40, 57), (5, 1200, 1400)])  # cached; over 32 MB: streamed
def test_sum_inputs_gives_torchs_adds_bit_for_bit(isa, count, size):
    """The engine's sum of a layer's inputs (``sum_inputs``, the motion layer's feat + base)
    equals torch's adds left to right, bit for bit, with both instruction sets, in the cache
    and streamed, into a buffer whose first elements lie before a 64-byte line (a head and a
    tail of single elements); the direct layer's ``sum_inputs`` runs it."""
    g = torch.Generator().manual_seed(count)
    xs = [torch.randn(size, generator=g) * 10 ** k for k in range(count)]
    want = xs[0] + xs[1]
    for x in xs[2:]:
        want = want + x
    out = torch.full(size, 7.)
    assert ext.sum_inputs(xs, out) is out and torch.equal(out, want)
    storage = torch.empty(want.numel() + 5)
    shifted = storage[3:3 + want.numel()].view(size)  # 12 bytes past a line
    assert torch.equal(ext.sum_inputs(xs, shifted), want)
    flat = [x.view(1, size[0], size[1], size[2]) for x in xs[:2]]
    layer = DirectConv2d(nn.Conv2d(size[0], 4, 3, padding=1).eval(), relu=False)
    with torch.inference_mode():
        torch.testing.assert_close(layer(flat, sum_inputs=True),
                                   layer([flat[0] + flat[1]]), rtol=0, atol=0)


def test_sum_inputs_refuses_bad_arguments():
    x = torch.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match='takes 2 to 8 inputs'):
        ext.sum_inputs([x], torch.empty_like(x))
    with pytest.raises(RuntimeError, match=r"inputs\[1\] must be a contiguous float32 CPU"):
        ext.sum_inputs([x, x[:, :, :3]], torch.empty_like(x))
    with pytest.raises(RuntimeError, match='out must be a contiguous float32 CPU'):
        ext.sum_inputs([x, x], torch.empty(2, 3, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match='out must not share memory with the inputs'):
        ext.sum_inputs([x, x.clone()], x)
