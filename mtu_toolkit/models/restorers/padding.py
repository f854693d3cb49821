"""Pad frames to a multiple of the network's stride and crop outputs back."""
import torch.nn.functional as F


def pad_to_multiple(x, multiple=4, mode='reflect'):
    """Pad the last two dims of ``x`` (..., H, W) at the bottom/right to multiples of ``multiple``.

    Reflect padding needs the pad smaller than the dim; tiny frames fall back to replicate.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return x
    if mode == 'reflect' and (ph >= h or pw >= w):
        mode = 'replicate'
    lead = x.shape[:-3]
    y = F.pad(x.reshape(-1, *x.shape[-3:]), (0, pw, 0, ph), mode=mode)
    return y.reshape(*lead, *y.shape[-3:])


def crop_to(x, h, w):
    """Crop (..., H', W') back to (..., h, w)."""
    return x[..., :h, :w]
