"""Evaluation protocols: how restored frames are scored (docs/evaluation.md has the full story).

- ``toolkit`` (default): the toolkit's own measures. Float results clamped to [0, 1], PSNR
  (peak 1, float64) and the Gaussian-window SSIM (scikit-image's ``gaussian_weights=True,
  use_sample_covariance=False``), every frame.
- ``reference``: the reference implementation's ``eval.py`` (what its scripts print). Frames
  cropped top-left to a multiple of 4 before inference, float results clamped to [0, 1] and not
  quantised, PSNR with peak 1 from a float32 MSE (numpy, as ``eval.py`` computes it), scikit-
  image's default SSIM (7x7 uniform window, sample covariance; ``multichannel=True``), every frame.
- ``matlab``: the reference's MATLAB evaluation, which produced the paper's tables. Results
  quantised to 8 bits as the reference's PNG writer stores them, the first frame of every
  sequence skipped, MATLAB's ``psnr`` and ``ssim`` of uint8 ``H x W x 3`` arrays
  (``matlab_metrics.py``). Inference sees the same top-left crop as ``reference`` (the frames
  MATLAB scored were written by ``eval.py``).

Any protocol can add Koehler et al.'s alignment (``align=True``, ``koehler.py``): each result
is intensity-scaled, registered to its ground truth by a global integer translation and both are
masked to the overlap before scoring (in float64). ``matlab`` then scores as the paper's aligned
evaluation does (Koehler et al.'s code): MeTriX MuX's PSNR and SSIM of the luma on the 0..255
scale, the scaled result not re-quantised; ``toolkit`` and ``reference`` keep their own PSNR and
SSIM.

Every protocol averages over all scored frames of all sequences (long sequences weigh more).
"""
import math
from dataclasses import dataclass

import numpy as np
import torch

from .koehler import SSIM_WINDOW, koehler_align, metrix_psnr, metrix_ssim
from .matlab_metrics import matlab_psnr, matlab_ssim, to_uint8
from .psnr_ssim import psnr, ssim, ssim_uniform


def reference_psnr(pred, gt):
    """PSNR of one (3, H, W) float32 frame pair as ``eval.py`` computes it.

    ``eval.py`` takes ``np.mean((a - b) ** 2)`` of float32 (H, W, 3) views of (3, H, W) arrays:
    numpy sums float32 pairwise in memory order, which is the (3, H, W) order, so the same
    expression on the (3, H, W) arrays gives the same float32 MSE bit for bit. Its
    ``10 log10(1 / MSE)`` then ran in float64 (numpy 1.x promoted the float32 scalar).
    """
    a = pred.detach().to('cpu', torch.float32).contiguous().numpy()
    b = gt.detach().to('cpu', torch.float32).contiguous().numpy()
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


@dataclass(frozen=True)
class EvalProtocol:
    """One way to score restored frames.

    Attributes:
        name (str): what ``--protocol`` calls it.
        summary (str): one line for tables and JSON.
        crop_multiple (int | None): frames must be cropped top-left to a multiple of this
            BEFORE inference (``ClipCropToMultiple`` in the test pipeline); None: no crop.
        skip_first_frame (bool): the first frame (index 0) of every sequence is not scored.
        aligned_scores (str): what scores an aligned pair, for tables and JSON.
        ssim_window (int): the side of its SSIM's window, which frames must reach (1: any
            size, the window padded).
        aligned_ssim_window (int): the same with ``align=True``.
    """
    name: str
    summary: str
    crop_multiple: int = None
    skip_first_frame: bool = False
    aligned_scores: str = "the protocol's PSNR and SSIM"
    ssim_window: int = 1
    aligned_ssim_window: int = 1

    def min_size(self, align=False):
        """The least frame height and width (px, after any crop) the protocol scores."""
        return self.aligned_ssim_window if align else self.ssim_window

    def score(self, pred, gt, align=False):
        """Score the frames of one sequence chunk.

        Args:
            pred (Tensor): (T, 3, H, W) restored frames, float, nominally [0, 1].
            gt (Tensor): (T, 3, H, W) ground truth, float in [0, 1].
            align (bool): Koehler et al.'s alignment first.

        Returns:
            dict: ``psnr`` and ``ssim`` (lists of T floats) and, with ``align``, ``shift``
            (T (dy, dx) pairs applied to the results).
        """
        pred, gt = self.prepare(pred, gt)
        if not align:
            p, s = self.measure(pred, gt)
            return dict(psnr=p, ssim=s)
        out = dict(psnr=[], ssim=[], shift=[])
        for z, x in zip(pred, gt):
            zr, xr, shift = koehler_align(z, x)
            p, s = self.measure_aligned(zr, xr)
            out['psnr'].append(p)
            out['ssim'].append(s)
            out['shift'].append(list(shift))
        return out

    def prepare(self, pred, gt):
        """(pred, gt) in the value domain the protocol scores."""
        raise NotImplementedError

    def measure(self, pred, gt):
        """Lists of per-frame PSNR and SSIM of prepared (T, 3, H, W) frames."""
        raise NotImplementedError

    def measure_aligned(self, zr, xr):
        """PSNR and SSIM (floats) of one aligned (3, H, W) float64 pair."""
        raise NotImplementedError


class ToolkitProtocol(EvalProtocol):

    def prepare(self, pred, gt):
        return pred.float().clamp(0, 1), gt.float()

    def measure(self, pred, gt):
        # whole chunk at once, as before protocols existed: identical numbers
        return psnr(pred, gt).tolist(), ssim(pred, gt).tolist()

    def measure_aligned(self, zr, xr):
        return psnr(zr, xr), ssim(zr, xr)


class ReferenceProtocol(EvalProtocol):

    def prepare(self, pred, gt):
        return pred.float().clamp(0, 1), gt.float()

    def measure(self, pred, gt):
        return ([reference_psnr(p, g) for p, g in zip(pred, gt)],
                [ssim_uniform(p, g) for p, g in zip(pred, gt)])

    def measure_aligned(self, zr, xr):
        return psnr(zr, xr), ssim_uniform(zr, xr)


class MatlabProtocol(EvalProtocol):

    def prepare(self, pred, gt):
        return to_uint8(pred), to_uint8(gt)

    def measure(self, pred, gt):
        # MATLAB is called as psnr(GT, result), ssim(GT, result); both are symmetric
        return ([matlab_psnr(g, p).item() for p, g in zip(pred, gt)],
                [matlab_ssim(g, p).item() for p, g in zip(pred, gt)])

    def measure_aligned(self, zr, xr):
        # Koehler et al.'s code: metrix_mux(xr, zr, 'PSNR') and metrix_mux(xr, zr, 'SSIM')
        return metrix_psnr(xr, zr), metrix_ssim(xr, zr)


PROTOCOLS = {p.name: p for p in (
    ToolkitProtocol(
        'toolkit', 'toolkit: float results, PSNR (peak 1), Gaussian-window SSIM (sigma 1.5), '
        'all frames', ssim_window=11, aligned_ssim_window=11),
    ReferenceProtocol(
        'reference', "reference eval.py: inputs cropped to a multiple of 4, float results, "
        'PSNR (peak 1, float32 MSE), scikit-image default SSIM (7x7 uniform), all frames',
        crop_multiple=4, ssim_window=7, aligned_ssim_window=7),
    MatlabProtocol(
        'matlab', 'reference MATLAB evaluation.m: 8-bit results, frames 2..N of each sequence, '
        "MATLAB psnr and ssim (3-D Gaussian, L=255)", crop_multiple=4, skip_first_frame=True,
        aligned_scores="Koehler et al.'s code: MeTriX MuX PSNR and SSIM (11x11 Gaussian, "
                       "valid) of the luma 0.299R+0.587G+0.114B, 0..255 scale",
        aligned_ssim_window=SSIM_WINDOW),
)}

#: what tables and JSON say about ``align=True``
ALIGN_SUMMARY = ('Koehler et al. 2012 alignment: intensity-scaled, registered by a global '
                 'integer translation, masked to the overlap')


def get_protocol(name):
    """The :class:`EvalProtocol` called ``name`` (a clear error naming the choices)."""
    if isinstance(name, EvalProtocol):
        return name
    if name not in PROTOCOLS:
        raise ValueError(f'unknown evaluation protocol {name!r}; choose one of '
                         f'{sorted(PROTOCOLS)}')
    return PROTOCOLS[name]


__all__ = ['EvalProtocol', 'PROTOCOLS', 'ALIGN_SUMMARY', 'get_protocol', 'reference_psnr']
