"""Pure-PyTorch reference implementations of the ops in ``mtu_toolkit.ops``.

They define the contracts (the docstrings of ``functions.py``), serve as the fallback when the
compiled extension is missing, and are what the tests compare the kernels against.
"""
import torch
import torch.nn.functional as F


def correlation_reference(f1, f2, max_displacement):
    """Local correlation (cost volume) of two feature maps.

    Args:
        f1 (Tensor): (N, C, H, W) features of the current frame.
        f2 (Tensor): (N, C, H, W) features of the other frame.
        max_displacement (int): D; shifts cover [-D, D]^2.

    Returns:
        Tensor: (N, (2D+1)^2, H, W) with
        ``out[n, (dy+D)*(2D+1) + (dx+D), y, x] = sum_c f1[n,c,y,x] * f2[n,c,y+dy,x+dx]``,
        zero where ``(y+dy, x+dx)`` falls outside the frame.
    """
    d = int(max_displacement)
    n, c, h, w = f1.shape
    f2p = F.pad(f2, (d, d, d, d))
    out = []
    for dy in range(2 * d + 1):
        for dx in range(2 * d + 1):
            out.append((f1 * f2p[:, :, dy:dy + h, dx:dx + w]).sum(1))
    return torch.stack(out, 1)


def smooth_cost_volume(volume, smooth):
    """``smooth x smooth`` box filter over the spatial dims (stride 1, zero pad, pad counted)."""
    if smooth is None or smooth <= 1:
        return volume
    return F.avg_pool2d(volume, smooth, stride=1, padding=smooth // 2,
                        count_include_pad=True)


def volume_argmax_to_displacement(volume, max_displacement):
    """(N, (2D+1)^2, H, W) volume -> int64 (N, 2, H, W) displacement (dx, dy); ties to the
    lowest index."""
    d = int(max_displacement)
    idx = volume.argmax(1)
    return torch.stack((idx % (2 * d + 1) - d, idx // (2 * d + 1) - d), 1)


def correlation_argmax_reference(f1, f2, max_displacement, smooth=5):
    """Displacement (dx, dy) maximising the (optionally box-smoothed) correlation.

    Returns:
        Tensor: int64 (N, 2, H, W); channel 0 = dx, channel 1 = dy, in pixels of the input grid.
    """
    with torch.no_grad():
        volume = correlation_reference(f1, f2, max_displacement)
        return volume_argmax_to_displacement(smooth_cost_volume(volume, smooth),
                                             max_displacement)


def warp_by_displacement_reference(feat, disp, scale):
    """Gather ``feat`` at integer displacements given on a grid ``scale`` times coarser.

    Args:
        feat (Tensor): (N, C, H, W) features to warp.
        disp (Tensor): int64 (N, 2, h, w), (dx, dy) in units of the coarse grid, with
            ``h >= ceil(H / scale)`` and ``w >= ceil(W / scale)``.
        scale (int): ratio of the fine to the coarse grid.

    Returns:
        Tensor: (N, C, H, W) with ``out[n,c,y,x] = feat[n,c,y+scale*dy, x+scale*dx]`` (the
        displacement read at ``(y//scale, x//scale)``), zero outside the frame.
    """
    n, c, h, w = feat.shape
    scale = int(scale)
    d = disp.long()
    if scale > 1:
        d = d.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    d = d[:, :, :h, :w] * scale
    ys = torch.arange(h, device=feat.device).view(1, h, 1) + d[:, 1]
    xs = torch.arange(w, device=feat.device).view(1, 1, w) + d[:, 0]
    valid = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).view(n, 1, h * w)
    out = feat.reshape(n, c, h * w).gather(2, index.expand(n, c, h * w))
    # zeros selected, not multiplied in: a NaN or Inf gathered in place of an outside source
    # stays out (0 * NaN is NaN), as in the kernels
    return torch.where(valid.unsqueeze(1), out.view(n, c, h, w), feat.new_zeros(()))


def normalize_features_reference(x, eps=1e-12, out=None):
    """``F.normalize(x, dim=1, eps=eps)`` of an (N, C, H, W) ``x``, the squares summed one
    channel plane at a time (contiguous sweeps, rather than ``F.normalize``'s strided reduction
    over channels, several times slower on the CPU); equal to it within float rounding (a few
    1e-8 for unit vectors). Written into ``out`` (shaped like ``x``, not ``x`` itself) when
    given. Not differentiable (it works in place on its sums)."""
    if x.shape[1] == 0:  # (no channels: nothing to divide)
        return torch.empty_like(x) if out is None else out
    sq = x[:, 0] * x[:, 0]
    plane = torch.empty_like(sq)
    for c in range(1, x.shape[1]):
        sq.add_(torch.mul(x[:, c], x[:, c], out=plane))
    norm = sq.sqrt_().clamp_min_(eps).unsqueeze(1)
    return torch.div(x, norm) if out is None else torch.div(x, norm, out=out)
