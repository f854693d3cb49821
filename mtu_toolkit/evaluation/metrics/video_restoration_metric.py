"""PSNR / SSIM of restored videos: per frame, per sequence and over all frames."""
from collections import defaultdict

import torch
from mmengine.evaluator import BaseMetric

from ...registry import METRICS
from .psnr_ssim import psnr, ssim


@METRICS.register_module()
class VideoRestorationMetric(BaseMetric):
    """Scores the restorer's ``predict`` outputs against their sharp frames.

    Each output is a dict ``pred`` (T, 3, H, W) float in [0, 1], ``gt`` (T, 3, H, W), ``key``
    (sequence name) and ``frame_indices`` (T ints). Predictions are clamped to [0, 1]. The overall
    ``PSNR`` / ``SSIM`` average over ALL frames (the paper's protocol), so long sequences weigh
    more. After :meth:`evaluate` (main process) :attr:`sequence_table` holds the per-sequence rows
    (sequence, frames, PSNR, SSIM), :attr:`overall` the all-frames row and :attr:`frame_table`
    the per-frame values, for tools/test.py to print and save.

    Args:
        device (str | None): where PSNR/SSIM are computed; None keeps the outputs' device (CPU).
            'cuda' makes SSIM of 720p frames ~100x faster on a GPU.
        collect_device (str): 'cpu' or 'gpu', for gathering results across ranks.
        prefix (str | None): prefix of the metric names in logs.
    """
    default_prefix = None

    def __init__(self, device=None, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.device = device
        self.sequence_table = []
        self.frame_table = []
        self.overall = None

    def process(self, data_batch, data_samples):
        """Score every frame of every output; keeps only small per-frame records."""
        for i, out in enumerate(data_samples):
            if 'gt' not in out:
                raise KeyError(f"output {i} of the batch has no 'gt': the test dataset must give "
                               'sharp frames to compute PSNR/SSIM')
            pred, gt = out['pred'], out['gt']
            if self.device is not None:
                pred, gt = pred.to(self.device), gt.to(self.device)
            if pred.shape != gt.shape:
                raise ValueError(f"sequence {out.get('key')!r}: pred {tuple(pred.shape)} and gt "
                                 f'{tuple(gt.shape)} differ in shape')
            pred = pred.float().clamp(0, 1)
            gt = gt.float()
            indices = out.get('frame_indices', list(range(pred.shape[0])))
            self.results.append(dict(
                key=str(out.get('key', f'seq{len(self.results)}')),
                frame_indices=[int(f) for f in indices],
                psnr=psnr(pred, gt).tolist(),
                ssim=ssim(pred, gt).tolist()))

    def compute_metrics(self, results):
        """Per-sequence tables and the overall means (over all frames)."""
        frames = defaultdict(dict)  # key -> frame index -> (psnr, ssim)
        for res in results:
            for f, p, s in zip(res['frame_indices'], res['psnr'], res['ssim']):
                frames[res['key']][f] = (p, s)  # a frame scored twice (padded ranks) counts once
        self.frame_table = [dict(sequence=key, frame=f, PSNR=p, SSIM=s)
                            for key in sorted(frames) for f, (p, s) in sorted(frames[key].items())]
        self.sequence_table = []
        for key in sorted(frames):
            values = torch.tensor(list(frames[key].values()), dtype=torch.float64)
            self.sequence_table.append(dict(sequence=key, frames=len(values),
                                            PSNR=values[:, 0].mean().item(),
                                            SSIM=values[:, 1].mean().item()))
        if not self.frame_table:
            raise ValueError('VideoRestorationMetric: no frames were evaluated')
        all_values = torch.tensor([[r['PSNR'], r['SSIM']] for r in self.frame_table],
                                  dtype=torch.float64)
        self.overall = dict(sequence='overall', frames=len(all_values),
                            PSNR=all_values[:, 0].mean().item(),
                            SSIM=all_values[:, 1].mean().item())
        return dict(PSNR=self.overall['PSNR'], SSIM=self.overall['SSIM'])
