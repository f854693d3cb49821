"""The compiled ops (mtu_toolkit._ext via mtu_toolkit.ops) against their references.

Every test here exercises the compiled kernels: a missing or broken extension fails the suite
(unless MTU_SKIP_EXT asks for the references on purpose), it never passes by comparing the
references with themselves.
"""
import os
import subprocess
import sys

import pytest
import torch

import mtu_toolkit.ops as ops
from mtu_toolkit.ops import (correlation, correlation_argmax, correlation_argmax_reference,
                             correlation_reference, warp_by_displacement,
                             warp_by_displacement_reference)
from mtu_toolkit.ops.extension import ext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(
    ops.extension.skip_requested(), reason='MTU_SKIP_EXT is set: compiled ops switched off')


def test_extension_is_built_and_used():
    assert ops.EXT_AVAILABLE, f'compiled ops unavailable: {ops.FALLBACK_REASON}'
    assert ops.uses_extension(torch.zeros(1, 1, 1, 1))
    assert ops.uses_extension(torch.zeros(1, 1, 1, 1, dtype=torch.float64))
    assert not ops.uses_extension(torch.zeros(1, 1, 1, 1, dtype=torch.float16))


# (N, C, H, W, D): batch > 1, channels not a multiple of 8, frames smaller than the window,
# widths on and off the kernels' vector tiles.
SHAPES = [(2, 5, 7, 9, 1), (3, 13, 6, 11, 4), (2, 3, 5, 6, 10), (2, 11, 9, 37, 4),
          (1, 52, 12, 32, 10)]


def features(n, c, h, w, dtype=torch.float32):
    return (torch.nn.functional.normalize(torch.randn(n, c, h, w, dtype=dtype), dim=1),
            torch.nn.functional.normalize(torch.randn(n, c, h, w, dtype=dtype), dim=1))


@pytest.mark.parametrize('shape', SHAPES)
def test_correlation_forward_matches_reference(shape):
    n, c, h, w, d = shape
    f1, f2 = features(n, c, h, w)
    out = correlation(f1, f2, d)
    assert out.shape == (n, (2 * d + 1)**2, h, w)
    torch.testing.assert_close(out, correlation_reference(f1, f2, d), rtol=0, atol=2e-6)
    f1, f2 = features(n, c, h, w, torch.float64)
    torch.testing.assert_close(correlation(f1, f2, d), correlation_reference(f1, f2, d),
                               rtol=0, atol=1e-13)
    # non-contiguous inputs are taken as they come
    strided = f1.to(memory_format=torch.channels_last), f2.transpose(2, 3).contiguous().mT
    torch.testing.assert_close(correlation(*strided, d), correlation_reference(f1, f2, d),
                               rtol=0, atol=1e-13)


def test_correlation_boundary_shifts_against_explicit_sums():
    """Corners and edges, every shift: direct sums, zero where the partner is outside."""
    n, c, h, w, d = 2, 3, 6, 7, 4
    f1, f2 = features(n, c, h, w, torch.float64)
    out = correlation(f1, f2, d)
    side = 2 * d + 1
    for y, x in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (2, 0), (0, 3)]:
        for dy in range(-d, d + 1):
            for dx in range(-d, d + 1):
                k = (dy + d) * side + dx + d
                inside = 0 <= y + dy < h and 0 <= x + dx < w
                expect = (f1[:, :, y, x] * f2[:, :, y + dy, x + dx]).sum(1) if inside \
                    else torch.zeros(n, dtype=torch.float64)
                torch.testing.assert_close(out[:, k, y, x], expect, rtol=0, atol=1e-14)


@pytest.mark.parametrize('shape', [(2, 3, 4, 5, 1), (1, 5, 3, 4, 2)])
def test_correlation_gradcheck(shape):
    n, c, h, w, d = shape
    f1, f2 = features(n, c, h, w, torch.float64)
    f1.requires_grad_()
    f2.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: correlation(a, b, d), (f1, f2))


def test_correlation_backward_matches_reference_autograd():
    n, c, h, w, d = 2, 13, 9, 21, 4
    f1, f2 = features(n, c, h, w)
    grad = torch.randn(n, (2 * d + 1)**2, h, w)
    grads = []
    for fn in (correlation, correlation_reference):
        a, b = f1.clone().requires_grad_(), f2.clone().requires_grad_()
        fn(a, b, d).backward(grad)
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=2e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=0, atol=2e-5)
    # one input without grad
    a = f1.clone().requires_grad_()
    correlation(a, f2, d).backward(grad)
    torch.testing.assert_close(a.grad, grads[1][0], rtol=0, atol=2e-5)


@pytest.mark.parametrize('smooth', [None, 1, 3, 5])
@pytest.mark.parametrize('shape', SHAPES)
def test_correlation_argmax_matches_materialised_path(shape, smooth):
    n, c, h, w, d = shape
    f1, f2 = features(n, c, h, w)
    disp = correlation_argmax(f1, f2, d, smooth)
    assert disp.dtype == torch.int64 and disp.shape == (n, 2, h, w)
    assert torch.equal(disp, correlation_argmax_reference(f1, f2, d, smooth))
    f1, f2 = features(n, c, h, w, torch.float64)
    assert torch.equal(correlation_argmax(f1, f2, d, smooth),
                       correlation_argmax_reference(f1, f2, d, smooth))


# (smooth 7: a box radius without its own compiled kernel)
@pytest.mark.parametrize('smooth', [1, 3, 5, 7])
@pytest.mark.parametrize('d', [1, 4, 10])
def test_correlation_argmax_ties_go_to_lowest_index(d, smooth):
    """Small-integer features make every sum exact, so ties are real and plentiful."""
    f1 = torch.randint(-1, 2, (2, 3, 11, 13)).float()
    f2 = torch.randint(-1, 2, (2, 3, 11, 13)).float()
    disp = correlation_argmax(f1, f2, d, smooth)
    assert torch.equal(disp, correlation_argmax_reference(f1, f2, d, smooth))
    # constant features: every shift keeping the partner inside ties; the lowest index is
    # (dx, dy) = (-D, -D) wherever that partner is inside the frame
    ones = torch.ones(1, 2, 2 * d + 3, 2 * d + 3)
    disp = correlation_argmax(ones, ones, d, 1)
    assert torch.equal(disp, correlation_argmax_reference(ones, ones, d, 1))
    assert disp[0, :, d, d].tolist() == [-d, -d]
    assert disp[0, :, -1, -1].tolist() == [-d, -d]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_correlation_argmax_workspace_is_grown_once_and_reused(dtype):
    """A caller's workspace (the MC head keeps one) grows to the scratch a call needs and is
    then reused, whatever it held before, for any thread count; the displacements never
    change. A workspace of the wrong kind is refused, naming it."""
    f1, f2 = features(2, 16, 40, 48, dtype)
    ref = correlation_argmax_reference(f1, f2, 4, 5)
    ws = torch.empty(0, dtype=torch.uint8)
    assert torch.equal(correlation_argmax(f1, f2, 4, 5, workspace=ws), ref)
    ptr, size = ws.data_ptr(), ws.numel()
    assert size > 0
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):  # fewer threads: fewer slices of the same workspace
            torch.set_num_threads(n)
            ws.fill_(255)  # NaN in every float the kernel reads before it writes
            g1, g2 = features(2, 16, 40, 48, dtype)
            assert torch.equal(correlation_argmax(g1, g2, 4, 5, workspace=ws),
                               correlation_argmax_reference(g1, g2, 4, 5))
            small = correlation_argmax(g1[:1, :, :20], g2[:1, :, :20], 4, 3, workspace=ws)
            assert torch.equal(small, correlation_argmax_reference(g1[:1, :, :20],
                                                                   g2[:1, :, :20], 4, 3))
            if n <= threads:
                assert ws.data_ptr() == ptr and ws.numel() == size
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(RuntimeError, match='workspace must be a contiguous uint8 CPU tensor'):
        correlation_argmax(f1, f2, 4, 5, workspace=torch.empty(8))
    import numpy as np
    fixed = torch.from_numpy(np.zeros(8, dtype=np.uint8))  # numpy's memory: cannot grow
    with pytest.raises(RuntimeError, match='workspace holds 8 bytes, this call needs'):
        correlation_argmax(f1, f2, 4, 5, workspace=fixed)


def test_correlation_argmax_recovers_a_translation():
    f2 = torch.randn(2, 8, 24, 28)
    f1 = torch.roll(f2, shifts=(-2, 3), dims=(2, 3))  # f1(y, x) = f2(y + 2, x - 3)
    disp = correlation_argmax(f1, f2, 4, 5)
    assert (disp[:, 0, 6:-6, 6:-6] == -3).all() and (disp[:, 1, 6:-6, 6:-6] == 2).all()


# (N, C, H, W, scale, grid h, grid w): sizes not multiples of scale, a grid larger than needed
@pytest.mark.parametrize('shape', [(2, 5, 16, 20, 4, 4, 5), (3, 3, 10, 13, 4, 4, 5),
                                   (2, 7, 9, 11, 1, 9, 11), (1, 26, 12, 8, 2, 7, 6)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_warp_forward_and_backward_match_reference(shape, dtype):
    n, c, h, w, scale, gh, gw = shape
    feat = torch.randn(n, c, h, w, dtype=dtype)
    disp = torch.randint(-2, 3, (n, 2, gh, gw))
    grad = torch.randn(n, c, h, w, dtype=dtype)
    results = []
    for fn in (warp_by_displacement, warp_by_displacement_reference):
        x = feat.clone().requires_grad_()
        out = fn(x, disp, scale)
        out.backward(grad)
        results.append((out.detach(), x.grad))
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=1e-6)


def test_warp_reads_channels_last_input_as_it_is():
    torch.manual_seed(0)
    feat = torch.randn(2, 13, 22, 30).contiguous(memory_format=torch.channels_last)
    disp = torch.randint(-3, 4, (2, 2, 6, 8))
    out = warp_by_displacement(feat, disp, 4)
    assert out.is_contiguous(memory_format=torch.channels_last)  # stays in the input's layout
    torch.testing.assert_close(out, warp_by_displacement_reference(feat.contiguous(), disp, 4),
                               rtol=0, atol=0)


def test_warp_gradcheck_with_colliding_sources():
    feat = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    disp = torch.zeros(2, 2, 2, 2, dtype=torch.int64)
    disp[:, 0, :, 1] = -1  # the right cells read the left ones: two outputs per source
    disp[1, 1, 1, :] = 5   # far outside: zeros
    assert torch.autograd.gradcheck(lambda f: warp_by_displacement(f, disp, 4), (feat,))
    out = warp_by_displacement(feat, disp, 4)
    assert torch.equal(out[0, :, :, 4:], feat[0, :, :, :4].detach())
    assert (out[1, :, 4:] == 0).all()


def test_results_do_not_depend_on_the_thread_count():
    f1, f2 = features(2, 11, 19, 40)
    grad = torch.randn(2, 81, 19, 40)

    def run():
        a, b = f1.clone().requires_grad_(), f2.clone().requires_grad_()
        out = correlation(a, b, 4)
        out.backward(grad)
        return out.detach(), a.grad, b.grad, correlation_argmax(f1, f2, 4, 5)

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = run()
        torch.set_num_threads(max(2, threads))
        multi = run()
    finally:
        torch.set_num_threads(threads)
    for s, m in zip(single, multi):
        assert torch.equal(s, m)


@pytest.mark.parametrize('kernels', [True, False])
def test_bad_arguments_raise_clear_errors(kernels, monkeypatch):
    """The same one-line errors from the kernels and from their references (the fallback, a
    float16 input on the CPU), which would otherwise broadcast, crop or round silently."""
    from mtu_toolkit.ops import functions
    if not kernels:
        monkeypatch.setattr(functions, 'uses_extension', lambda tensor: False)
    f1, f2 = features(1, 3, 5, 6)
    with pytest.raises(ValueError, match=r'must have the same shape, got \[1, 3, 5, 6\] and '
                       r'\[1, 2, 5, 6\]'):
        correlation(f1, f2[:, :2], 2)
    wider = torch.randn(1, 3, 5, 9)
    with pytest.raises(ValueError, match='same shape'):
        correlation(f1, wider, 2)
    with pytest.raises(ValueError, match='same shape'):
        correlation_argmax(f1, torch.randn(2, 3, 5, 6), 2)  # not broadcast to a batch of 2
    with pytest.raises(ValueError, match='4-D'):
        correlation(f1[0], f2[0], 2)
    with pytest.raises(TypeError, match='floating-point tensor, got torch.int64'):
        correlation_argmax(f1.long(), f2.long(), 2)  # the box filter would round down
    with pytest.raises(ValueError, match='max_displacement'):
        correlation(f1, f2, -1)
    with pytest.raises(ValueError, match='smooth must be odd'):
        correlation_argmax(f1, f2, 2, 4)
    with pytest.raises(ValueError, match='smaller than'):
        warp_by_displacement(f1, torch.zeros(1, 2, 1, 2, dtype=torch.int64), 4)
    with pytest.raises(ValueError, match='disp must be'):
        warp_by_displacement(f1, torch.zeros(1, 3, 2, 2, dtype=torch.int64), 4)


def test_missing_extension_falls_back_with_one_warning():
    code = ('import warnings; warnings.simplefilter("always"); import torch\n'
            'import mtu_toolkit.ops as o, mtu_toolkit.ops.functions\n'
            'a = torch.randn(1, 3, 5, 6); b = torch.randn(1, 3, 5, 6)\n'
            'assert not o.EXT_AVAILABLE and not o.uses_extension(a)\n'
            'assert torch.equal(o.correlation(a, b, 2), o.correlation_reference(a, b, 2))\n'
            'assert torch.equal(o.correlation_argmax(a, b, 2), '
            'o.correlation_argmax_reference(a, b, 2))\n')
    env = dict(os.environ, MTU_SKIP_EXT='1', PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, '-c', code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count('ExtensionFallbackWarning') == 1, proc.stderr
    assert 'MTU_SKIP_EXT is set' in proc.stderr


@pytest.fixture
def each_isa():
    """The CPU kernels' instruction sets this machine runs (the best one last restored)."""
    isas = ['best'] + (['avx2'] if ext.cpu_isa() == 'avx512' else []) + ['baseline']
    yield isas
    ext.cpu_use_isa('best')


# (N, C, H, W, D) in the argmax's segmented layout (16 runs of ceil(W / 16) pixels on AVX-512,
# the counts below; 8 of ceil(W / 8) on AVX2): runs of 4
# (W = 57: tiles of 3 positions and a rest of 1, the last runs partly or wholly past the row),
# shifts in tiles of 7 (AVX-512) and 6 + 3 (AVX2) and vertical shifts in groups of 3 and a
# rest, a frame taller than a block of rows, runs of 1 pixel (narrower than the box: W = 5),
# of 19 (more than 16 positions: two transposes a row on AVX-512, the last of 3 positions),
# MTU10-L's ~100 channels
ARGMAX_SHAPES = [(1, 8, 20, 57, 10), (2, 6, 11, 23, 3), (1, 5, 9, 5, 2), (1, 4, 12, 300, 4),
                 (1, 99, 9, 41, 3)]


@pytest.mark.parametrize('shape', ARGMAX_SHAPES)
def test_correlation_argmax_agrees_on_every_instruction_set(shape, each_isa):
    """Every path (AVX-512 and AVX2 with FMA, the portable one) gives the reference's argmax
    (random features: no near-ties), and says which it is."""
    n, c, h, w, d = shape
    f1, f2 = features(n, c, h, w)
    ref = correlation_argmax_reference(f1, f2, d, 5)
    results = {}
    for isa in each_isa:
        ext.cpu_use_isa(isa)
        results[isa] = ext.cpu_isa(), correlation_argmax(f1, f2, d, 5)
        assert torch.equal(results[isa][1], ref), (isa, results[isa][0])
    # each choice really ran its path
    assert results['baseline'][0] == 'baseline'
    assert results.get('avx2', ('avx2',))[0] == 'avx2'


def test_correlation_argmax_ties_agree_on_every_instruction_set(each_isa):
    """Small-integer features (exact sums, ties everywhere) over 45 channels, which AVX-512
    takes in two chunks (22 and 23, each storing its sums for the next): every path gives the
    reference's argmax, ties included."""
    g = torch.Generator().manual_seed(3)
    f1 = torch.randint(-1, 2, (1, 45, 13, 40), generator=g).float()
    f2 = torch.randint(-1, 2, (1, 45, 13, 40), generator=g).float()
    ref = correlation_argmax_reference(f1, f2, 4, 3)
    for isa in each_isa:
        ext.cpu_use_isa(isa)
        assert torch.equal(correlation_argmax(f1, f2, 4, 3), ref), isa


def test_correlation_argmax_of_no_channels_is_the_first_shift(each_isa):
    """Features of no channels correlate to zero at every shift: a tie everywhere, which goes
    to the first shift, (-D, -D), on every path (it divided by zero once)."""
    f = torch.zeros(1, 0, 5, 40)
    ref = correlation_argmax_reference(f, f, 2, 3)
    assert (ref == -2).all()
    for isa in each_isa:
        ext.cpu_use_isa(isa)
        assert torch.equal(correlation_argmax(f, f, 2, 3), ref), isa
        m = ops.matching_features(f, 2)
        assert torch.equal(correlation_argmax(m, m, 2, 3), ref), isa


def test_mc_isa_choice_rejects_unknown_names():
    with pytest.raises(RuntimeError, match='isa must be'):
        ext.cpu_use_isa('sse9')


# a frame taller than the forward's row blocks (16 rows), sources far outside (rows and
# columns), sizes off the cell grid
def test_warp_forward_blocks_and_far_sources_match_reference():
    feat = torch.randn(2, 3, 41, 37)
    disp = torch.randint(-12, 13, (2, 2, 11, 10))
    disp[0, :, 3] = 0  # a row of cells without motion: runs merge across cells
    out = warp_by_displacement(feat, disp, 4)
    assert torch.equal(out, warp_by_displacement_reference(feat, disp, 4))


@pytest.mark.parametrize('channels_last', [False, True])
def test_warp_into_out_writes_every_value_of_the_buffer(channels_last):
    feat = torch.randn(2, 5, 16, 21)
    disp = torch.randint(-3, 4, (2, 2, 4, 6))
    if channels_last:
        feat = feat.contiguous(memory_format=torch.channels_last)
    out = torch.full_like(feat, float('nan'))  # in feat's layout; any value not written shows
    got = warp_by_displacement(feat, disp, 4, out=out)
    assert got is out or got.data_ptr() == out.data_ptr()
    assert torch.equal(out, warp_by_displacement_reference(feat.contiguous(), disp, 4))


def test_warp_into_a_kept_output_larger_than_the_cache_writes_every_value(each_isa):
    """A kept output over 32 MB is written past the cache, a 64-byte line at a time (x86):
    every value lands, border cells included, whichever instruction set the other kernels use;
    an unaligned one and a fresh one are written with normal stores, the same values."""
    torch.manual_seed(0)
    feat = torch.randn(1, 9, 1024, 1024)  # 37.7 MB
    disp = torch.randint(-10, 11, (1, 2, 256, 256))
    ref = warp_by_displacement_reference(feat, disp, 4)
    for isa in each_isa:
        ext.cpu_use_isa(isa)
        out = torch.full_like(feat, float('nan'))  # any value not written shows
        warp_by_displacement(feat, disp, 4, out=out)
        assert torch.equal(out, ref), isa
        unaligned = torch.full((feat.numel() + 1,), float('nan'))[1:].view_as(feat)
        warp_by_displacement(feat, disp, 4, out=unaligned)
        assert torch.equal(unaligned, ref), isa
        assert torch.equal(warp_by_displacement(feat, disp, 4), ref), isa


def test_warp_out_is_checked():
    feat = torch.randn(1, 3, 8, 8)
    disp = torch.zeros(1, 2, 2, 2, dtype=torch.int64)
    with pytest.raises(RuntimeError, match='share memory'):
        warp_by_displacement(feat, disp, 4, out=feat)
    with pytest.raises(RuntimeError, match="feat's shape"):
        warp_by_displacement(feat, disp, 4, out=torch.empty(1, 3, 8, 9))
    with pytest.raises(RuntimeError, match='contiguous'):
        warp_by_displacement(feat, disp, 4, out=torch.empty(1, 3, 8, 16)[..., ::2])
    with pytest.raises(RuntimeError, match='autograd'):
        warp_by_displacement(feat.requires_grad_(), disp, 4, out=torch.empty(1, 3, 8, 8))


def test_warp_outside_the_frame_is_zero_whatever_the_frame_holds():
    """A NaN or Inf in the frame does not leak into the outputs whose source is outside it
    (the reference multiplied a clamped gather by a 0/1 mask: 0 * NaN is NaN)."""
    feat = torch.randn(1, 2, 8, 8)
    feat[0, :, 0, 0] = torch.tensor([float('nan'), float('inf')])
    disp = torch.full((1, 2, 2, 2), -1, dtype=torch.int64)  # every source 4 px up and left
    ref = warp_by_displacement_reference(feat, disp, 4)
    outside = torch.zeros(8, 8, dtype=torch.bool)
    outside[:4] = outside[:, :4] = True
    assert torch.equal(ref[0, :, outside], torch.zeros(2, int(outside.sum())))
    assert torch.isnan(ref[0, 0, 4, 4]) and torch.isinf(ref[0, 1, 4, 4])
    if ops.uses_extension(feat):
        torch.testing.assert_close(warp_by_displacement(feat, disp, 4), ref, equal_nan=True)


def ieee_normalized(x, eps):
    """The normalisation's steps in numpy (IEEE arithmetic in x's precision, channel order):
    the values the compiled kernel must give bit for bit."""
    import numpy as np
    a = x.numpy()
    sq = a[:, 0] * a[:, 0]
    for c in range(1, a.shape[1]):
        sq = sq + a[:, c] * a[:, c]
    norm = np.maximum(np.sqrt(sq), a.dtype.type(eps))  # (NaN propagates)
    with np.errstate(invalid='ignore'):  # (inf / inf: NaN, as intended)
        return torch.from_numpy(a / norm[:, None])


# (N, C, H, W): whole chunks of 128 pixels and a rest (5 x 130), fewer pixels than a chunk
# (9 x 11, two images), one channel, the network's 52 channels at a 1/4-size 180 x 320 crop
NORMALIZE_SHAPES = [(1, 7, 5, 130), (2, 52, 9, 11), (1, 1, 3, 50), (1, 52, 16, 40)]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shape', NORMALIZE_SHAPES)
def test_normalize_features_is_the_ieee_steps_on_every_instruction_set(shape, dtype, each_isa):
    """The compiled normalisation gives the plain steps' values bit for bit on every path,
    with zero vectors kept zero, tiny ones clamped and a NaN or an infinity spreading as in
    the steps; and it equals F.normalize within rounding."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=g, dtype=dtype) * 30
    x[0, :, 0, 0] = 0
    x[0, :, 1, 1] = 1e-30
    x[-1, 0, 2, 3] = float('nan')
    x[-1, -1, 2, 4] = float('inf')
    ref = ieee_normalized(x, 1e-12)
    for isa in each_isa:
        ext.cpu_use_isa(isa)
        got = ops.normalize_features(x)
        assert torch.equal(got.isnan(), ref.isnan()), isa
        assert torch.equal(got.nan_to_num(7.), ref.nan_to_num(7.)), isa
    finite = ref.isfinite().all(1, keepdim=True).expand_as(ref)
    torch.testing.assert_close(got[finite], torch.nn.functional.normalize(x, dim=1)[finite],
                               rtol=0, atol=2e-7)
    torch.testing.assert_close(got[finite], ops.normalize_features_reference(x)[finite],
                               rtol=0, atol=2e-7)
    assert (got[0, :, 0, 0] == 0).all()


def test_normalize_features_out_and_arguments():
    """``out`` is written and returned; a wrong or overlapping ``out``, a 3-D input or a bad eps
    is refused with a one-line error; a strided input gives what its contiguous copy gives; no
    channels give an empty result on both paths; under autograd the op is F.normalize (no
    ``out``)."""
    x = torch.randn(1, 6, 4, 140)
    out = torch.full_like(x, 5.)
    assert ops.normalize_features(x, out=out) is out
    assert torch.equal(out, ops.normalize_features(x))
    with pytest.raises(RuntimeError, match=r"out must be a contiguous tensor of x's shape"):
        ops.normalize_features(x, out=torch.empty(1, 6, 4, 139))
    with pytest.raises(RuntimeError, match='out must not share memory with x'):
        ops.normalize_features(x, out=x)
    with pytest.raises(ValueError, match='4-D'):
        ops.normalize_features(x[0])
    with pytest.raises(ValueError, match='eps must be > 0'):
        ops.normalize_features(x, eps=0)
    for fn in (ops.normalize_features, ops.normalize_features_reference):
        assert fn(torch.empty(1, 0, 4, 140)).shape == (1, 0, 4, 140)
    wide = torch.randn(1, 12, 4, 140)
    assert torch.equal(ops.normalize_features(wide[:, ::2]),
                       ops.normalize_features(wide[:, ::2].contiguous()))
    leaf = x.clone().requires_grad_()
    y = ops.normalize_features(leaf)
    y.sum().backward()
    assert leaf.grad is not None
    with pytest.raises(RuntimeError, match='does not support autograd'):
        ops.normalize_features(leaf, out=out)


def segmented_reference(x, d):
    """The matching layout written out in plain indexing: (N, H, L + 2D, C, S), S runs of L
    pixels (16 on AVX-512 and the portable path, 8 on AVX2: ``matching_shape``'s last size),
    position k of lane s holding pixel s * L + k - D of the row (zero outside it)."""
    n, c, h, w = x.shape
    runs = ops.matching_shape(x, d)[-1]
    length = -(-w // runs)
    out = torch.zeros(n, h, length + 2 * d, c, runs, dtype=x.dtype)
    for s in range(runs):
        for k in range(length + 2 * d):
            px = s * length + k - d
            if 0 <= px < w:
                out[:, :, k, :, s] = x[:, :, :, px].permute(0, 2, 1)
    return out


# (N, C, H, W, D): rows of whole chunks of 128 pixels and a rest of vectors and pixels (W =
# 300: 2 chunks, 2 + 1 vectors of 16 and 12 pixels on AVX-512), narrower than a vector (W =
# 5), runs of 1 to 19 pixels, two images, the network's 52 channels
MATCHING_SHAPES = [(1, 8, 6, 300, 4), (2, 6, 11, 23, 3), (1, 5, 9, 5, 2), (1, 52, 7, 57, 10),
                   (1, 99, 5, 41, 3)]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shape', MATCHING_SHAPES)
def test_matching_features_are_the_normalised_features_laid_out(shape, dtype, each_isa):
    """matching_features holds normalize_features' values, bit for bit, at the places the
    layout names (zeros elsewhere), on every path; the argmax of two of them is the argmax of
    the normalised features they hold, bit for bit, on every path."""
    n, c, h, w, d = shape
    g = torch.Generator().manual_seed(11)
    a = torch.randn(n, c, h, w, generator=g, dtype=dtype) * 3
    b = torch.randn(n, c, h, w, generator=g, dtype=dtype) * 3
    a[0, :, 0, 0] = 0  # a zero vector stays zero
    for isa in each_isa:
        ext.cpu_use_isa(isa)
        na, nb = ops.normalize_features(a), ops.normalize_features(b)
        ma, mb = ops.matching_features(a, d), ops.matching_features(b, d)
        assert ma.segmented and ma.shape == a.shape and ma.max_displacement == d
        assert ma.data.shape == ops.matching_shape(a, d)
        assert torch.equal(ma.data, segmented_reference(na, d)), isa
        for smooth in (0, 3, 5):
            want = correlation_argmax(na, nb, d, smooth)
            assert torch.equal(correlation_argmax(ma, mb, d, smooth), want), (isa, smooth)
            assert torch.equal(correlation_argmax(ma, ma, d, smooth),
                               correlation_argmax(na, na, d, smooth)), (isa, smooth)


def test_matching_features_argmax_ties_and_translation():
    """Small-integer features (ties everywhere, 45 channels: two AVX-512 chunks) give the
    reference's argmax through the matching layout; so does a translation of real-looking
    features, found exactly."""
    g = torch.Generator().manual_seed(3)
    f1 = torch.randint(-1, 2, (1, 45, 13, 40), generator=g).float()
    f2 = torch.randint(-1, 2, (1, 45, 13, 40), generator=g).float()
    n1, n2 = ops.normalize_features(f1), ops.normalize_features(f2)
    got = correlation_argmax(ops.matching_features(f1, 4), ops.matching_features(f2, 4), 4, 3)
    assert torch.equal(got, correlation_argmax_reference(n1, n2, 4, 3))
    base = torch.randn(1, 16, 40, 72, generator=g)
    moved = torch.roll(base, shifts=(2, -3), dims=(2, 3))
    disp = correlation_argmax(ops.matching_features(moved, 5), ops.matching_features(base, 5), 5)
    assert (disp[0, 0, 8:-8, 8:-8] == 3).all() and (disp[0, 1, 8:-8, 8:-8] == -2).all()


def test_matching_features_out_fallback_and_arguments():
    """``out`` is written and returned; a wrong or overlapping ``out``, mixed inputs, features
    made for another D, or of other shapes are refused with a one-line error; without the
    kernels (a float16 tensor, a trace) ``data`` is normalize_features' output and the argmax
    still agrees; a strided input gives its contiguous copy's result; a layout made on a path
    of other runs (AVX2's 8, the portable path's 16) is refused."""
    x, y = torch.randn(1, 6, 4, 40), torch.randn(1, 6, 4, 40)
    shape = ops.matching_shape(x, 3)
    runs = 8 if ext.cpu_isa().startswith('avx2') else 16
    assert shape == (1, 4, -(-40 // runs) + 6, 6, runs)
    out = torch.full(shape, 5.)
    m = ops.matching_features(x, 3, out=out)
    assert m.data is out and torch.equal(out, ops.matching_features(x, 3).data)
    with pytest.raises(RuntimeError, match=r'out must be a contiguous tensor of shape'):
        ops.matching_features(x, 3, out=torch.empty(*shape[:4], 15))
    with pytest.raises(ValueError, match='4-D'):
        ops.matching_features(x[0], 3)
    with pytest.raises(ValueError, match='eps must be > 0'):
        ops.matching_features(x, 3, eps=0)
    with pytest.raises(ValueError, match='max_displacement must be an integer'):
        ops.matching_features(x, -1)
    my = ops.matching_features(y, 3)
    with pytest.raises(TypeError, match='must both be MatchingFeatures or both tensors'):
        correlation_argmax(m, y, 3)
    with pytest.raises(ValueError, match='made for max_displacement 3, not 2'):
        correlation_argmax(m, my, 2)
    with pytest.raises(ValueError, match='of one shape'):
        correlation_argmax(m, ops.matching_features(torch.randn(1, 6, 5, 40), 3), 3)
    with pytest.raises(RuntimeError, match='must be a contiguous float32 or float64 CPU'):
        strided = torch.zeros(*shape[:3], 12, runs)[:, :, :, ::2]
        ext.correlation_argmax_matching(strided, my.data, 40, 3, 3)
    want = correlation_argmax(ops.normalize_features(x), ops.normalize_features(y), 3)
    assert torch.equal(correlation_argmax(m, my, 3), want)
    wide = torch.randn(1, 12, 4, 40)
    assert torch.equal(ops.matching_features(wide[:, ::2], 3).data,
                       ops.matching_features(wide[:, ::2].contiguous(), 3).data)
    half = ops.matching_features(x.half(), 3)
    assert not half.segmented and half.data.shape == x.shape
    traced = torch.jit.trace(lambda a, b: correlation_argmax(
        ops.matching_features(a, 3), ops.matching_features(b, 3), 3), (x, y), check_trace=False)
    assert torch.equal(traced(x, y), correlation_argmax_reference(
        ops.normalize_features_reference(x), ops.normalize_features_reference(y), 3, 5))
    narrow = torch.randn(1, 3, 4, 0)  # rows of no pixels still have their halo: zeros
    kept = torch.full(ops.matching_shape(narrow, 2), 5.)
    assert kept.numel() and (ops.matching_features(narrow, 2, out=kept).data == 0).all()
    storage = torch.randn(shape.numel())
    with pytest.raises(RuntimeError, match='out must not share memory with x'):
        ops.matching_features(storage[:x.numel()].view(x.shape), 3, out=storage.view(shape))
    ext.cpu_use_isa({'avx512': 'avx2'}.get(ext.cpu_isa(), 'baseline'))  # other runs, if any
    try:
        if ops.matching_shape(x, 3) != shape:
            with pytest.raises(RuntimeError, match=r"\(matching_features' layout\), got shape "
                               r".*: made on another CPU path \(cpu_use_isa\)"):
                correlation_argmax(m, my, 3)
    finally:
        ext.cpu_use_isa('best')
