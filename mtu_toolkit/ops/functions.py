"""The public motion-compensation ops: compiled kernels where available, references otherwise.

Contracts, for features of shape (N, C, H, W):

- :func:`correlation` -> (N, (2D+1)^2, H, W), differentiable w.r.t. both inputs;
- :func:`correlation_argmax` -> int64 (N, 2, H, W) displacement (dx, dy), not differentiable;
- :func:`warp_by_displacement` -> like ``feat``, differentiable w.r.t. ``feat``;
- :func:`normalize_features` -> like ``x``, each pixel's channel vector of unit length
  (inference: the cosine correlation's inputs);
- :func:`matching_features` -> :class:`MatchingFeatures`, those normalised features in the
  layout :func:`correlation_argmax` reads without copying (inference).

The kernels run float32/float64 on CPU and float32/float16/bfloat16/float64 on CUDA (when the
extension was built with CUDA; the normalisation has a CPU kernel only); other inputs use the
``*_reference`` twins, and so does a trace (``torch.jit.trace``, ONNX export): the compiled
kernels are opaque to the tracer, their twins are plain PyTorch, so a model built on these ops
exports as it is.
"""
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable
from torch.profiler import record_function

from ..memory import tracing
from .extension import EXT_AVAILABLE, EXT_WITH_CUDA, ext
from .reference import (correlation_argmax_reference, correlation_reference,
                        normalize_features_reference, warp_by_displacement_reference)

#: the profiler ranges of the compiled argmax and warp (``mtu_toolkit.analysis.stages``), and
#: of the matching layout's preparation
ARGMAX_RANGE = 'mtu::correlation_argmax'
WARP_RANGE = 'mtu::warp'
MATCHING_RANGE = 'mtu::matching_features'

_CPU_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def uses_extension(tensor):
    """Whether the ops run the compiled kernels for ``tensor``'s device and dtype (never while
    :func:`tracing`)."""
    if not EXT_AVAILABLE or tracing():
        return False
    if tensor.is_cuda:
        return EXT_WITH_CUDA and tensor.dtype in _CUDA_DTYPES
    return tensor.device.type == 'cpu' and tensor.dtype in _CPU_DTYPES


def _displacement(max_displacement):
    d = int(max_displacement)
    if d != max_displacement or d < 0:
        raise ValueError(f'max_displacement must be an integer >= 0, got {max_displacement!r}')
    return d


def matching_range(max_displacement, smooth=None):
    """``(D, smooth)`` as the matching ops take them, or a ValueError naming the argument:
    D an integer >= 0, ``smooth`` an odd box size (``None``, 0 or 1: no smoothing, given
    back as 0)."""
    d = _displacement(max_displacement)
    box = 0 if smooth is None else int(smooth)
    if box != smooth and smooth is not None or box < 0 or (box > 1 and box % 2 == 0):
        raise ValueError(f'smooth must be odd (or None/0/1 for no smoothing), got {smooth!r}')
    return d, box


def _check_features(f1, f2):
    """The matching ops' inputs, checked alike for the kernels and their references (which
    would broadcast a batch, crop a wider ``f2`` or round an integer box filter down)."""
    for name, f in (('f1', f1), ('f2', f2)):
        if f.dim() != 4:
            raise ValueError(f'{name} must be a 4-D (N, C, H, W) tensor, got shape '
                             f'{list(f.shape)}')
        if not f.is_floating_point():
            raise TypeError(f'{name} must be a floating-point tensor, got {f.dtype}')
    if f1.shape != f2.shape:
        raise ValueError(f'f1 and f2 must have the same shape, got {list(f1.shape)} and '
                         f'{list(f2.shape)}')
    if f1.dtype != f2.dtype or f1.device != f2.device:
        raise TypeError(f'f1 and f2 must have the same dtype and device, got {f1.dtype} on '
                        f'{f1.device} and {f2.dtype} on {f2.device}')


def _check_displacement(feat, disp, scale):
    """The warp's inputs, checked alike for the kernel and its reference."""
    if feat.dim() != 4:
        raise ValueError(f'feat must be a 4-D (N, C, H, W) tensor, got shape {list(feat.shape)}')
    if disp.dim() != 4 or disp.shape[0] != feat.shape[0] or disp.shape[1] != 2:
        raise ValueError(f"disp must be (N, 2, h, w) with N = feat's batch size {feat.shape[0]}, "
                         f'got shape {list(disp.shape)}')
    need = [-(-size // scale) for size in feat.shape[2:]]
    if disp.shape[2] < need[0] or disp.shape[3] < need[1]:
        raise ValueError(f"disp's grid {disp.shape[2]}x{disp.shape[3]} is smaller than feat's "
                         f'{feat.shape[2]}x{feat.shape[3]} divided by scale {scale} (needs at '
                         f'least {need[0]}x{need[1]})')


class CorrelationFunction(torch.autograd.Function):
    """Autograd wrapper of the compiled cost volume (gradients for both feature maps)."""

    @staticmethod
    def forward(ctx, f1, f2, max_displacement):
        ctx.save_for_backward(f1, f2)
        ctx.max_displacement = max_displacement
        return ext.correlation_forward(f1, f2, max_displacement)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        f1, f2 = ctx.saved_tensors
        grad_f1, grad_f2 = ext.correlation_backward(grad_out, f1, f2, ctx.max_displacement)
        return (grad_f1 if ctx.needs_input_grad[0] else None,
                grad_f2 if ctx.needs_input_grad[1] else None, None)


class WarpFunction(torch.autograd.Function):
    """Autograd wrapper of the compiled integer warp (gradient for the features only)."""

    @staticmethod
    def forward(ctx, feat, disp, scale):
        ctx.save_for_backward(disp)
        ctx.scale = scale
        ctx.mark_non_differentiable(disp)
        return ext.warp_forward(feat, disp, scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        disp, = ctx.saved_tensors
        return ext.warp_backward(grad_out, disp, ctx.scale), None, None


def correlation(f1, f2, max_displacement):
    """Local correlation (cost volume) of two feature maps.

    Args:
        f1 (Tensor): (N, C, H, W) features of the current frame.
        f2 (Tensor): (N, C, H, W) features of the other frame (same shape, dtype, device).
        max_displacement (int): D; shifts (dx, dy) cover [-D, D]^2.

    Returns:
        Tensor: (N, (2D+1)^2, H, W) with
        ``out[n, (dy+D)*(2D+1) + (dx+D), y, x] = sum_c f1[n,c,y,x] * f2[n,c,y+dy,x+dx]``,
        zero where ``(y+dy, x+dx)`` falls outside the frame. A plain dot product: normalise the
        features first for a cosine similarity.
    """
    d = _displacement(max_displacement)
    if not tracing():  # (a trace records shapes as constants: checked where it was made)
        _check_features(f1, f2)
    if uses_extension(f1):
        return CorrelationFunction.apply(f1, f2, d)
    return correlation_reference(f1, f2, d)


def correlation_argmax(f1, f2, max_displacement, smooth=5, workspace=None):
    """Best displacement per pixel, fusing correlation, box smoothing and argmax.

    Equals ``argmax`` over the channels of ``correlation`` followed by an ``smooth x smooth`` box
    filter (stride 1, zero padding, padding counted), ties going to the lowest channel index,
    without materialising the (2D+1)^2-channel volume.

    Args:
        f1, f2 (Tensor | MatchingFeatures): (N, C, H, W) features, as for
            :func:`correlation`; or both :func:`matching_features` of such features, made for
            this ``max_displacement``: the same result as on the normalised features they hold
            (on the compiled CPU path their rows are read in place, not copied).
        max_displacement (int): D.
        smooth (int | None): odd box size; ``None``, 0 or 1 for no smoothing.
        workspace (Tensor | None): a contiguous uint8 CPU tensor the caller keeps from call to
            call for the compiled CPU kernel's scratch (grown in place to what a call needs,
            ~21 MB a thread for 52 channels at 180x320): a fresh scratch page-faults on every
            call. Not used on CUDA or by the reference.

    Returns:
        Tensor: int64 (N, 2, H, W); channel 0 = dx, channel 1 = dy, in pixels of the input grid.
    """
    d, smooth = matching_range(max_displacement, smooth)
    if isinstance(f1, MatchingFeatures) or isinstance(f2, MatchingFeatures):
        return _argmax_of_matching(f1, f2, d, smooth, workspace)
    if not tracing():
        _check_features(f1, f2)
    if uses_extension(f1):
        # named in torch.profiler's traces (a pybind call is invisible to it otherwise)
        with torch.no_grad(), record_function(ARGMAX_RANGE):
            return ext.correlation_argmax(f1, f2, d, smooth,
                                          workspace if f1.device.type == 'cpu' else None)
    return correlation_argmax_reference(f1, f2, d, smooth)


def warp_by_displacement(feat, disp, scale, out=None):
    """Gather ``feat`` at integer displacements given on a grid ``scale`` times coarser.

    Args:
        feat (Tensor): (N, C, H, W) features to warp.
        disp (Tensor): integer (N, 2, h, w) displacement (dx, dy) in coarse-grid units, with
            ``h >= ceil(H / scale)`` and ``w >= ceil(W / scale)``.
        scale (int): ratio of the fine to the coarse grid (4 in the MTU network).
        out (Tensor | None): where to write the result (inference only, like ``out=`` of torch
            functions: no autograd): ``feat``'s shape, dtype and device, contiguous in its
            layout (NCHW, or channels-last for a channels-last ``feat`` on the CPU), sharing no
            memory with ``feat``. Reusing one spares the page faults of a fresh full-resolution
            tensor every frame.

    Returns:
        Tensor: (N, C, H, W), ``out[n,c,y,x] = feat[n,c,y+scale*dy,x+scale*dx]`` with (dx, dy) read
        at ``(y//scale, x//scale)``; zero where the source is outside the frame. Differentiable
        w.r.t. ``feat`` (without ``out``). ``out`` itself when given.
    """
    scale = int(scale)
    if scale < 1:
        raise ValueError(f'scale must be a positive integer, got {scale}')
    if not tracing():
        _check_displacement(feat, disp, scale)
    if out is not None and torch.is_grad_enabled() and feat.requires_grad:
        raise RuntimeError('warp_by_displacement(out=...) does not support autograd (feat '
                           'requires grad); call it without out, or under torch.no_grad()')
    if uses_extension(feat):
        with record_function(WARP_RANGE):
            if out is not None:
                return ext.warp_forward(feat, disp.long(), scale, out)
            return WarpFunction.apply(feat, disp.long(), scale)
    result = warp_by_displacement_reference(feat, disp, scale)
    return result if out is None else out.copy_(result)


def normalize_features(x, eps=1e-12, out=None):
    """Each pixel's feature vector over the channels divided by its L2 norm, for inference:
    ``F.normalize(x, dim=1, eps=eps)``, the cosine correlation's inputs.

    On the CPU (float32, float64) the compiled kernel normalises a chunk of pixels at a time,
    reading their channels twice from the cache (the sums of squares, then the divisions)
    instead of sweeping the tensor once per channel. Its values are those of the plain steps
    in order, each rounded as IEEE arithmetic rounds it (as numpy's are): the squares summed in
    channel order, the square root, the clamp at ``eps``, one division a value. They equal
    ``F.normalize``'s and :func:`normalize_features_reference`'s within float rounding (torch's
    own CPU square root differs from the correctly rounded one by up to an ulp). Elsewhere
    (CUDA, other dtypes, no extension, a trace) :func:`normalize_features_reference` runs.

    Args:
        x (Tensor): (N, C, H, W) features.
        eps (float): the norm's lower bound (> 0): a zero vector stays zero.
        out (Tensor | None): where to write the result: a contiguous tensor of ``x``'s shape,
            dtype and device sharing no memory with it (reusing one spares a fresh tensor's
            page faults every frame).

    Returns:
        Tensor: like ``x`` (``out`` when given). Not differentiable: under autograd it is
        ``F.normalize``, and ``out`` is refused.
    """
    if not tracing() and x.dim() != 4:
        raise ValueError(f'x must be a 4-D (N, C, H, W) tensor, got shape {list(x.shape)}')
    if not eps > 0:
        raise ValueError(f'eps must be > 0, got {eps!r}')
    if torch.is_grad_enabled() and x.requires_grad:
        if out is not None:
            raise RuntimeError('normalize_features(out=...) does not support autograd (x '
                               'requires grad); call it without out, or under torch.no_grad()')
        return torch.nn.functional.normalize(x, dim=1, eps=eps)
    if uses_extension(x) and x.device.type == 'cpu':
        return ext.normalize_features(x, float(eps), out)
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype
                            or out.device != x.device):
        raise ValueError(f"out must be a tensor of x's shape {list(x.shape)}, dtype {x.dtype} "
                         f'and device {x.device}, got {list(out.shape)}, {out.dtype} on '
                         f'{out.device}')
    return normalize_features_reference(x, eps, out)


class MatchingFeatures(NamedTuple):
    """Motion features L2-normalised over channels, in the form :func:`correlation_argmax`
    reads fastest (made by :func:`matching_features`).

    Attributes:
        data (Tensor): on the compiled CPU path (:attr:`segmented`) a contiguous
            ``(N, H, L + 2D, C, S)`` tensor: each row cut into ``S`` runs of ``L = ceil(W / S)``
            pixels, its position ``k`` holding pixel ``s * L + k - D`` of every run ``s`` (lane
            ``s``) for every channel, zero outside the row, so that a horizontal shift of up to
            ``D`` pixels is a whole number of positions (``S``: a vector of float32 on the path
            the CPU runs, 16 with AVX-512, 8 with AVX2; 16 on the portable path; a layout made
            on one path is refused on a path of other runs); elsewhere the normalised
            ``(N, C, H, W)`` features themselves.
        shape (torch.Size): the features' ``(N, C, H, W)``.
        max_displacement (int): the ``D`` of the layout.
    """
    data: torch.Tensor
    shape: torch.Size
    max_displacement: int

    @property
    def segmented(self):
        """Whether :attr:`data` is in the segmented layout (else plain normalised features)."""
        return self.data.dim() == 5


def matching_shape(x, max_displacement):
    """The shape of :func:`matching_features`' ``data`` for ``x`` (N, C, H, W) with
    ``max_displacement`` (for a buffer to pass as its ``out``)."""
    d = _displacement(max_displacement)
    if _segments_here(x):
        return torch.Size(ext.matching_shape(x, d))
    return x.shape


def _segments_here(x):
    return uses_extension(x) and x.device.type == 'cpu'


def matching_features(x, max_displacement, eps=1e-12, out=None):
    """``x`` normalised as :func:`normalize_features` does, made ready for
    :func:`correlation_argmax` with ``max_displacement`` (inference).

    On the CPU with the compiled kernels (float32, float64) the values are put into the
    argmax's segmented layout (:class:`MatchingFeatures`) in the same pass; given plain
    features, the argmax builds that layout itself on every call, from copies of the rows it
    reads (a row of ``f2`` once for each block of rows that reads it). The layout is
    ``(L + 2D) * 16 / W`` times the features' size (its halo: 2x at ``W = 320``, ``D = 10``).
    Elsewhere ``data`` is :func:`normalize_features`' output. Either way
    ``correlation_argmax(matching_features(a, D), matching_features(b, D), D, smooth)`` equals
    ``correlation_argmax(normalize_features(a), normalize_features(b), D, smooth)`` exactly.

    Args:
        x (Tensor): (N, C, H, W) features.
        max_displacement (int): the D of the argmax the result is for.
        eps (float): the norm's lower bound (> 0), as for :func:`normalize_features`.
        out (Tensor | None): where to write ``data``: a contiguous tensor of
            :func:`matching_shape` ``(x, max_displacement)``, ``x``'s dtype and device, sharing
            no memory with ``x`` (a buffer kept from frame to frame spares a fresh tensor's page
            faults).

    Returns:
        MatchingFeatures: not differentiable (nor is the argmax it is for).
    """
    d = _displacement(max_displacement)
    if not tracing() and x.dim() != 4:
        raise ValueError(f'x must be a 4-D (N, C, H, W) tensor, got shape {list(x.shape)}')
    if not eps > 0:
        raise ValueError(f'eps must be > 0, got {eps!r}')
    with torch.no_grad():
        if _segments_here(x):
            with record_function(MATCHING_RANGE):
                data = ext.matching_features(x, d, float(eps), out)
        else:
            data = normalize_features(x, eps, out)
    return MatchingFeatures(data, x.shape, d)


def _argmax_of_matching(m1, m2, d, smooth, workspace):
    """correlation_argmax of two MatchingFeatures (checked to match each other and ``d``)."""
    for name, m in (('f1', m1), ('f2', m2)):
        if not isinstance(m, MatchingFeatures):
            raise TypeError(f'f1 and f2 must both be MatchingFeatures or both tensors, got '
                            f'{name} of type {type(m).__name__}')
        if m.max_displacement != d:
            raise ValueError(f'{name} was made for max_displacement {m.max_displacement}, not '
                             f'{d}: make it with matching_features(x, {d})')
    if not tracing() and (m1.shape != m2.shape or m1.segmented != m2.segmented
                          or m1.data.dtype != m2.data.dtype or m1.data.device != m2.data.device):
        raise ValueError(f'f1 and f2 must be matching features of one shape, layout, dtype and '
                         f'device, got {list(m1.shape)} and {list(m2.shape)}')
    if not m1.segmented:
        return correlation_argmax(m1.data, m2.data, d, smooth, workspace)
    with torch.no_grad(), record_function(ARGMAX_RANGE):
        return ext.correlation_argmax_matching(m1.data, m2.data, m1.shape[3], d, smooth)
