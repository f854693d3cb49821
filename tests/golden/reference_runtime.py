"""What the fixture scripts of this folder need to run the paper's reference implementation on
a CPU, without any of its code: a plain stand-in for its CUDA correlation package, and small
context managers. Imported by ``make_official_fixture.py`` and ``make_train_step_fixture.py``.
"""
import contextlib
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


class PlainCorrelation(nn.Module):
    """flownet2's ``Correlation`` for ``kernel_size=1``, strides 1 and ``pad = max_displacement``
    in plain PyTorch: ``out[:, (dy+D)*(2D+1) + (dx+D), y, x] = mean_c f1[c, y, x] *
    f2[c, y+dy, x+dx]`` (zero where ``f2`` is outside). (N, C, h, w) x 2 -> (N, (2D+1)^2, h, w).
    The attributes are those the reference reads (``max_displacement``, ``stride2``).
    """

    def __init__(self, pad_size=0, kernel_size=1, max_displacement=0, stride1=1, stride2=1,
                 corr_multiply=1):
        super().__init__()
        if (kernel_size, stride1, stride2, corr_multiply) != (1, 1, 1, 1) \
                or pad_size != max_displacement:
            raise ValueError('PlainCorrelation supports kernel 1, strides 1, pad = D only, got '
                             f'pad {pad_size} kernel {kernel_size} D {max_displacement} '
                             f'strides {stride1}/{stride2} multiply {corr_multiply}')
        self.pad_size, self.kernel_size, self.max_displacement = pad_size, kernel_size, \
            max_displacement
        self.stride1, self.stride2, self.corr_multiply = stride1, stride2, corr_multiply

    def forward(self, f1, f2):
        d = self.max_displacement
        h, w = f1.shape[-2:]
        padded = F.pad(f2, (d, d, d, d))
        planes = [(f1 * padded[:, :, d + dy:d + dy + h, d + dx:d + dx + w]).mean(1)
                  for dy in range(-d, d + 1) for dx in range(-d, d + 1)]
        return torch.stack(planes, 1)


@contextlib.contextmanager
def temporarily(get, set_, value):
    """``set_(value)`` for the block, then back to what ``get()`` gave before."""
    old = get()
    set_(value)
    try:
        yield
    finally:
        set_(old)


def working_directory(path):
    return temporarily(os.getcwd, os.chdir, path)


def default_dtype(dtype):
    return temporarily(torch.get_default_dtype, torch.set_default_dtype, dtype)
