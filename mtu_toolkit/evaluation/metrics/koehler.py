"""Koehler et al. (ECCV 2012) alignment of a restored frame to its ground truth before scoring.

Blur leaves the position of a deblurred image ambiguous by a few pixels, so Koehler et al.'s
benchmark (used for video by Su et al., CVPR 2017, and for the paper's tables, per the reference
implementation's README) scores a result only after:

1. intensity scaling: ``zs = (sum(x z) / sum(z z)) z`` over all pixels and channels, with ``x``
   the ground truth and ``z`` the result (both unaligned);
2. registration: the integer translation that maximises the circular cross-correlation of the
   channel means, ``|ifft2(fft2(mean_c x) * conj(fft2(mean_c zs)))|`` (Guizar-Sicairos et al.'s
   ``dftregistration`` with upsampling 1): its peak at row ``p`` of ``m`` means a shift of ``p``
   when ``p < m // 2`` (in MATLAB's 1-based terms ``p + 1 <= fix(m / 2)``), else ``p - m``;
   ties go to the first peak in column-major order, as MATLAB's ``max`` picks it;
3. shifting: ``zr[i, j] = zs[i - dy, j - dx]`` with zeros where that falls outside the frame,
   and the ground truth multiplied by the same shift of an all-ones mask: ``xr = x * mask``.

``zr`` and ``xr`` (full frame size, zero outside the overlap) are then scored. A result that
is the ground truth moved down 3 rows and left 2 columns registers with (dy, dx) = (-3, 2), the
move that brings it back.

The benchmark's own code scores the aligned pair with the MeTriX MuX toolbox (``metrix_mux(xr,
zr, 'PSNR')`` and ``'SSIM'``), which first turns an RGB frame into its luma in double precision,
``Y = 0.299 R + 0.587 G + 0.114 B`` (not rounded), then computes, on the 0..255 scale:

- :func:`metrix_psnr`: ``10 log10(255^2 / mean((Y_x - Y_z)^2))``;
- :func:`metrix_ssim`: Wang et al.'s ``ssim_index`` with its defaults: an 11 x 11 Gaussian window
  (sigma 1.5, normalised), local statistics over the windows that lie inside the frame only
  ('valid' filtering: no padding), C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 255, and the mean of
  that map.

The scaled result is not clipped or re-quantised (it may exceed 255).
"""
import math

import torch

from .matlab_metrics import matlab_gaussian1d
from .psnr_ssim import separable_filter_valid

#: MeTriX MuX's RGB -> luma weights (its preprocessing of colour input)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

#: side of the SSIM window of Wang et al.'s ``ssim_index`` (frames must be at least this big)
SSIM_WINDOW = 11


def signed_peak(index, size):
    """Peak position -> signed shift, as ``dftregistration`` maps it (see module docstring)."""
    return index - size if index >= size // 2 else index


def register_translation(reference, moving):
    """Integer (dy, dx) that moves ``moving`` onto ``reference``: both (C, H, W), any scale."""
    if reference.shape != moving.shape:
        raise ValueError(f'register_translation: shapes differ: {tuple(reference.shape)} vs '
                         f'{tuple(moving.shape)}')
    a = reference.to(torch.float64).mean(0)
    b = moving.to(torch.float64).mean(0)
    cc = torch.fft.ifft2(torch.fft.fft2(a) * torch.fft.fft2(b).conj()).abs()
    h, w = cc.shape
    # MATLAB's max(max(CC)) returns the first maximum in column-major order
    flat = int(torch.argmax(cc.t().reshape(-1)))
    col, row = divmod(flat, h)
    return signed_peak(row, h), signed_peak(col, w)


def shift_with_zeros(img, dy, dx):
    """(..., H, W) -> out[..., i, j] = img[..., i - dy, j - dx], zero where that is outside."""
    h, w = img.shape[-2:]
    out = torch.zeros_like(img)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def koehler_align(result, gt):
    """Scale, register and mask one frame pair.

    Args:
        result (Tensor): (C, H, W) restored frame, any value scale.
        gt (Tensor): (C, H, W) ground truth in the same scale.

    Returns:
        tuple: ``(zr, xr, (dy, dx))``: the aligned result and the masked ground truth, float64
        (C, H, W), and the shift applied to the result.
    """
    z = result.to(torch.float64)
    x = gt.to(torch.float64).to(z.device)
    if x.shape != z.shape:
        raise ValueError(f'koehler_align: result {tuple(z.shape)} and gt {tuple(x.shape)} '
                         'differ in shape')
    den = (z * z).sum()
    # an all-zero result stays zero whatever the scale (MATLAB would divide 0 by 0)
    scale = (x * z).sum() / den if den > 0 else den
    zs = scale * z
    dy, dx = register_translation(x, zs)
    zr = shift_with_zeros(zs, dy, dx)
    xr = x * shift_with_zeros(torch.ones_like(x), dy, dx)
    return zr, xr, (dy, dx)


def luma(img):
    """(3, H, W) or (H, W) frame -> (H, W) float64 luma (a single channel is taken as is)."""
    img = img.to(torch.float64)
    if img.dim() == 2:
        return img
    if img.dim() != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f'luma: expected a (3, H, W) or (1, H, W) frame, got shape '
                         f'{tuple(img.shape)}')
    if img.shape[0] == 1:
        return img[0]
    r, g, b = LUMA_WEIGHTS
    return r * img[0] + g * img[1] + b * img[2]


def metrix_psnr(reference, query):
    """MeTriX MuX's PSNR of two frames on the 0..255 scale: (3, H, W) or (H, W), any float;
    computed on their luma (see the module docstring). Returns a float (inf for equal lumas)."""
    a, b = luma(reference), luma(query).to(reference.device)
    if a.shape != b.shape:
        raise ValueError(f'metrix_psnr: frames differ in size: {tuple(a.shape)} vs '
                         f'{tuple(b.shape)}')
    mse = (a - b).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255 * 255 / mse)


def metrix_ssim(reference, query):
    """MeTriX MuX's SSIM (Wang et al.'s ``ssim_index``, default arguments) of two frames on the
    0..255 scale: (3, H, W) or (H, W), at least 11 x 11; computed on their luma. Returns a
    float."""
    a, b = luma(reference), luma(query).to(reference.device)
    if a.shape != b.shape:
        raise ValueError(f'metrix_ssim: frames differ in size: {tuple(a.shape)} vs '
                         f'{tuple(b.shape)}')
    if min(a.shape) < SSIM_WINDOW:
        # ssim_index returns -Inf there; a number that is no score would enter the mean
        raise ValueError(f'metrix_ssim: frames of {tuple(a.shape)} are smaller than the '
                         f'{SSIM_WINDOW}x{SSIM_WINDOW} window')
    kernel = matlab_gaussian1d(1.5)  # fspecial('gaussian', 11, 1.5) is its outer square
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    stats = separable_filter_valid(torch.stack([a, b, a * a, b * b, a * b]), kernel)
    mx, my, exx, eyy, exy = stats
    vx, vy, vxy = exx - mx * mx, eyy - my * my, exy - mx * my
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean().item()


__all__ = ['koehler_align', 'register_translation', 'shift_with_zeros', 'signed_peak', 'luma',
           'metrix_psnr', 'metrix_ssim', 'LUMA_WEIGHTS', 'SSIM_WINDOW']
