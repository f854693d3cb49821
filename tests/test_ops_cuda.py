"""The CUDA kernels against the references, in float32, float16 and bfloat16 (forward and
backward), and the network on CUDA against its CPU frames, for every variant.

Skipped without a GPU and an extension built with CUDA (``FORCE_CUDA=1``); ``tools/gpu_check.sh``
runs them when a GPU is lent. The references run in float64 on the CPU on the same (rounded)
inputs, so the tolerances below are the kernels' own rounding: the sums accumulate in
``at::opmath_type`` (float for the half types) and the results are rounded to the input dtype.
"""
import os

import pytest
import torch

from mtu_toolkit import ops
from mtu_toolkit.ops import (correlation, correlation_argmax, correlation_argmax_reference,
                             correlation_reference, warp_by_displacement,
                             warp_by_displacement_reference)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.EXT_WITH_CUDA),
    reason='needs a GPU and mtu_toolkit._ext built with CUDA (FORCE_CUDA=1)')

#: dtype -> (rtol, atol) of a result of that dtype against the float64 reference, relative to
#: the result's scale (its largest magnitude)
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
DTYPES = list(TOL)
# (N, C, H, W, D): batch > 1, channels off the warp size, widths off the tiles, D = 10
SHAPES = [(2, 13, 9, 37, 4), (1, 52, 24, 40, 10), (3, 5, 7, 6, 2)]


def features(n, c, h, w, dtype):
    g = torch.Generator().manual_seed(n * 1000 + c * 10 + h)
    f1 = torch.nn.functional.normalize(torch.randn(n, c, h, w, generator=g), dim=1)
    f2 = torch.nn.functional.normalize(torch.randn(n, c, h, w, generator=g), dim=1)
    return f1.to(dtype).cuda(), f2.to(dtype).cuda()


def close(got, ref, dtype, what):
    """``got`` (CUDA, ``dtype``) against ``ref`` (CPU float64) within TOL of ref's scale."""
    scale = max(ref.abs().max().item(), 1e-30)
    err = (got.double().cpu() - ref).abs().max().item() / scale
    assert err <= TOL[dtype], f'{what} {dtype}: max error {err:.2e} of the scale > {TOL[dtype]}'


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('shape', SHAPES)
def test_correlation_forward_backward(shape, dtype):
    n, c, h, w, d = shape
    f1, f2 = features(n, c, h, w, dtype)
    a, b = f1.clone().requires_grad_(), f2.clone().requires_grad_()
    out = correlation(a, b, d)
    assert out.dtype == dtype and out.shape == (n, (2 * d + 1) ** 2, h, w)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    out.backward(grad.cuda())
    ra, rb = f1.double().cpu().requires_grad_(), f2.double().cpu().requires_grad_()
    ref = correlation_reference(ra, rb, d)
    ref.backward(grad.double())
    close(out.detach(), ref.detach(), dtype, 'correlation')
    close(a.grad, ra.grad, dtype, 'grad f1')
    close(b.grad, rb.grad, dtype, 'grad f2')


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('shape', SHAPES)
def test_correlation_argmax(shape, dtype):
    """The argmax of the float64 reference on the same (rounded) inputs (the staged kernel: D <=
    10, smooth <= 9): at >= 99.9% of the pixels in float32 (float sums against float64 ones: only near-ties may differ), >= 99% in
    the half types."""
    n, c, h, w, d = shape
    f1, f2 = features(n, c, h, w, dtype)
    for smooth in (1, 5):
        got = correlation_argmax(f1, f2, d, smooth).cpu()
        ref = correlation_argmax_reference(f1.double().cpu(), f2.double().cpu(), d, smooth)
        agree = (got == ref).all(1).float().mean().item()
        assert agree >= (0.999 if dtype == torch.float32 else 0.99), (smooth, agree)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize('d, smooth', [(11, 5), (3, 11), (10, 9)])
def test_correlation_argmax_plain_kernel(d, smooth, dtype):
    """The shapes the staged kernel leaves to the plain one: D > 10, smooth > 9, and a chunk
    over 48 KB (float64 at D = 10, smooth 9)."""
    f1, f2 = features(2, 6, 21, 35, dtype)
    got = correlation_argmax(f1, f2, d, smooth).cpu()
    ref = correlation_argmax_reference(f1.double().cpu(), f2.double().cpu(), d, smooth)
    assert (got == ref).all(1).float().mean().item() >= 0.999


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('scale', [4, 1])
def test_warp_forward_backward(dtype, scale):
    g = torch.Generator().manual_seed(scale)
    feat = torch.randn(2, 7, 21, 26, generator=g).to(dtype)
    gh, gw = -(-21 // scale), -(-26 // scale)
    disp = torch.randint(-3, 4, (2, 2, gh, gw), generator=g)
    grad = torch.randn(2, 7, 21, 26, generator=g).to(dtype)
    x = feat.cuda().requires_grad_()
    out = warp_by_displacement(x, disp.cuda(), scale)
    out.backward(grad.cuda())
    rx = feat.double().requires_grad_()
    ref = warp_by_displacement_reference(rx, disp, scale)
    ref.backward(grad.double())
    assert torch.equal(out.detach().cpu().double(), ref.detach())  # a gather: exact
    close(x.grad, rx.grad, dtype, 'warp grad')  # atomic adds of up to a few terms
    buf = torch.full_like(x, float('nan')).detach()
    with torch.no_grad():
        warp_by_displacement(feat.cuda(), disp.cuda(), scale, out=buf)
    assert torch.equal(buf.cpu().double(), ref.detach())


def variants():
    from mtu_toolkit.analysis.benchmark import VARIANTS
    return list(VARIANTS)


@pytest.mark.parametrize('variant', variants())
def test_variant_on_cuda_matches_cpu_frames(variant):
    """A 4-frame clip restored on CUDA against the CPU's frames (float32 without TF32; MTU2-hp
    under its float16 autocast), the recurrent state carried on each device: the restorer as
    it is and the tools' model (cuDNN autotuned)."""
    from mtu_toolkit.analysis.benchmark import VARIANTS
    from mtu_toolkit.apis import init_restorer
    from mtu_toolkit.deploy import tool_model
    config, dtype, _ = VARIANTS[variant]
    torch.manual_seed(0)
    cpu = init_restorer(os.path.join(ROOT, config), None, 'cpu')
    cpu.infer_dtype = None  # the CPU frames in float32, the reference of every variant
    gpu = init_restorer(os.path.join(ROOT, config), None, 'cuda')
    gpu.load_state_dict(cpu.state_dict())
    clip = torch.rand(4, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode():
            ref = cpu.infer_clip(clip)
            results = {'restorer': gpu.infer_clip(clip.cuda()).float().cpu(),
                       'tool model': tool_model(gpu).infer_clip(clip.cuda()).float().cpu()}
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = saved
    for name, got in results.items():
        diff = (got - ref).abs()
        print(f'{variant} {name}: max |CUDA - CPU| {diff.max().item():.2e}, '
              f'mean {diff.mean().item():.2e}')
        # float16: the half-precision network's rounding; a flipped near-tie of the matching
        # moves a few 4x4 cells, hence the mean and a high quantile rather than the maximum
        tol = 2e-2 if dtype == 'float16' else 1e-4
        assert diff.mean().item() <= tol / 10, name
        assert torch.quantile(diff.flatten()[::7], 0.999).item() <= tol, name
