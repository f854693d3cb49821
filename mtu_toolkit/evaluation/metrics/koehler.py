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

``zr`` and ``xr`` (full frame size, zero outside the overlap) are then scored as usual. A result
that is the ground truth moved down 3 rows and left 2 columns registers with (dy, dx) = (-3, 2),
the move that brings it back.
"""
import torch


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


__all__ = ['koehler_align', 'register_translation', 'shift_with_zeros', 'signed_peak']
