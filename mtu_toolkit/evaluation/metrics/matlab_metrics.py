"""MATLAB's ``psnr`` and ``ssim`` on 8-bit RGB frames, as the paper's MATLAB evaluation calls them.

The paper's tables were scored by a MATLAB script that reads the restored frames (8-bit PNGs)
and the 8-bit ground truth and calls ``psnr(GT, result)`` and ``ssim(GT, result)`` on the
``H x W x 3`` uint8 arrays. What those calls compute, from MathWorks' documentation (the
``psnr``, ``ssim`` and ``imfilter`` reference pages; see docs/evaluation.md for the details and
what is not verified; these functions were NOT run against MATLAB here):

- ``psnr``: peak 255 for uint8, MSE over all elements in double: ``10 log10(255^2 / MSE)``.
- ``ssim``: an ``M x N x 3`` array with the default data format is a 3-D grayscale VOLUME, not
  three colour channels: its local statistics come from an isotropic 3-D Gaussian (sigma =
  ``Radius`` 1.5, size ``2 ceil(3 sigma) + 1`` = 11 in every dimension) applied with
  ``imfilter(..., 'conv', 'replicate')``, constants C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 255,
  and the SSIM map is averaged over ALL voxels (no border is cropped).

The 3-D Gaussian is separable. Along the 3-long colour axis, replicate padding turns its eleven
taps into a 3 x 3 channel-mixing matrix (:func:`channel_mixing_matrix`), so the filter is an 11 x
11 spatial Gaussian with replicate padding followed by that mixing. For a single-channel image the
matrix is [[1]] and the filter is MATLAB's 2-D one (``fspecial('gaussian', 11, 1.5)``).

Frames here are ``(3, H, W)`` or ``(N, 3, H, W)`` tensors (channels first; MATLAB's array is the
same data as ``H x W x 3``) of 8-bit values, as uint8 or as floats in the 0..255 scale.
"""
import math

import torch
import torch.nn.functional as F

from .psnr_ssim import separable_filter_valid


def to_uint8(img):
    """Float frames in [0, 1] -> uint8, as the reference writes its PNGs.

    The reference saves ``cv2.imwrite(path, result * 255)`` with the clamped float32 result;
    OpenCV converts float to 8-bit with ``saturate_cast``: round half to even, then clip to
    0..255. Here: clamp to [0, 1], multiply by 255 in float32, round half to even.
    """
    return (img.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


def _nchw(img, dtype):
    img = torch.as_tensor(img).detach()
    if img.dim() == 3:
        img = img.unsqueeze(0)
    if img.dim() != 4:
        raise ValueError(f'expected (C, H, W) or (N, C, H, W) frames, got shape {tuple(img.shape)}')
    return img.to(dtype)


def matlab_psnr(a, b, peak=255.0):
    """MATLAB ``psnr(a, b)`` of 8-bit frames: ``10 log10(peak^2 / MSE)``, MSE in float64 over
    all elements of each frame (inf for identical frames).

    Returns a float64 tensor (N,) (one value per frame of ``(N, 3, H, W)``; (1,) for one frame).
    """
    a = _nchw(a, torch.float64)
    b = _nchw(b, torch.float64).to(a.device)
    if a.shape != b.shape:
        raise ValueError(f'matlab_psnr: frames differ in shape: {tuple(a.shape)} vs '
                         f'{tuple(b.shape)}')
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(peak * peak / mse)


def matlab_gaussian1d(radius=1.5, dtype=torch.float64):
    """The 1-D factor of MATLAB ssim's Gaussian: ``2 ceil(3 radius) + 1`` taps, normalised.

    MATLAB builds the N-D kernel ``exp(-|x|^2 / (2 radius^2))`` on that grid, zeroes taps below
    ``eps * max`` (none are, at these sizes) and normalises it to sum 1; that kernel is the outer
    product of this one with itself, N times.
    """
    r = math.ceil(3 * radius)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-(x * x) / (2 * radius * radius))
    return (k / k.sum()).to(dtype)


def channel_mixing_matrix(channels, kernel):
    """What a 1-D filter ``kernel`` (odd length) with replicate padding does along an axis of
    ``channels`` samples, as a (channels, channels) matrix M: ``out[c] = sum_c' M[c, c'] in[c']``.

    Tap j (offset j - r) of output c reads sample ``clamp(c + j - r, 0, channels - 1)``.
    """
    r = (kernel.numel() - 1) // 2
    m = torch.zeros(channels, channels, dtype=kernel.dtype)
    for c in range(channels):
        for j in range(kernel.numel()):
            m[c, min(max(c + j - r, 0), channels - 1)] += kernel[j]
    return m


def _volume_filter(v, kernel, mix):
    """MATLAB ``imfilter(v, 3-D Gaussian, 'conv', 'replicate')`` of (N, C, H, W) volumes."""
    n, c, h, w = v.shape
    r = (kernel.numel() - 1) // 2
    v = F.pad(v.reshape(n * c, 1, h, w), (r, r, r, r), mode='replicate')
    v = separable_filter_valid(v, kernel).view(n, c, h, w)
    return torch.einsum('dc,nchw->ndhw', mix, v)


def matlab_ssim(a, b, dynamic_range=255.0, radius=1.5, dtype=torch.float64):
    """MATLAB ``ssim(a, b)`` of ``H x W x C`` frames taken as 3-D volumes (default DataFormat).

    Args:
        a, b: (C, H, W) or (N, C, H, W) frames in the 0..``dynamic_range`` scale (uint8 or
            float; uint8 is MATLAB's input here).
        dynamic_range (float): L of C1 = (0.01 L)^2, C2 = (0.03 L)^2 (255 for uint8 input).
        radius (float): the Gaussian's sigma.
        dtype (torch.dtype): computation dtype. float64 gives the values the definition gives;
            MATLAB's own arithmetic precision only changes rounding (docs/evaluation.md).

    Returns a float64 tensor (N,): the mean of the SSIM map over all H x W x C voxels.
    """
    a = _nchw(a, dtype)
    b = _nchw(b, dtype).to(a.device)
    if a.shape != b.shape:
        raise ValueError(f'matlab_ssim: frames differ in shape: {tuple(a.shape)} vs '
                         f'{tuple(b.shape)}')
    kernel = matlab_gaussian1d(radius, dtype).to(a.device)
    mix = channel_mixing_matrix(a.shape[1], kernel.cpu()).to(a.device)
    c1, c2 = (0.01 * dynamic_range) ** 2, (0.03 * dynamic_range) ** 2
    # statistics of frames centred on mid-range: the filter sums to 1 in every direction, so
    # means shift by the centre and (co)variances do not, with less cancellation in float32
    mid = dynamic_range / 2
    xc, yc = a - mid, b - mid
    n = a.shape[0]
    stats = _volume_filter(torch.cat([xc, yc, xc * xc, yc * yc, xc * yc]), kernel, mix)
    mx, my, exx, eyy, exy = stats.split(n)
    vx, vy, vxy = exx - mx * mx, eyy - my * my, exy - mx * my
    ux, uy = mx + mid, my + mid
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).double().mean(1)


__all__ = ['to_uint8', 'matlab_psnr', 'matlab_ssim', 'matlab_gaussian1d',
           'channel_mixing_matrix']
