"""The paper's inter-frame alignment accuracy (Sec. 4.2; Tables 1, 2, 5).

How well the motion compensation aligns: the sharp frame t-1 warped by the displacement that
the last matching MC module estimated for frame t, against the sharp frame t, both downsampled
by 4, scored by PSNR and SSIM over the pixels the warp fills. As the reference implementation
measures it (its ``eval.py``, ``eval_warp`` with 'downsample'): the warp gathers GT_{t-1} at
x + d (bilinear, zeros outside: exact at the correlation head's integer displacements), the mask
is the warp of an all-ones image, GT_t, the warped frame and the mask are area-downsampled by 4,
PSNR is the masked MSE's, SSIM the mean of scikit-image's full SSIM map (7x7 uniform window,
sample covariance, border 'reflect') weighted by the mask.

``NoneMCHead`` gives the zero displacement: the score of no alignment, the baseline of the
ablations. Heads whose motion is no displacement (``FANMCHead``'s filters) are not applicable.
The first frame of every sequence has no previous frame and is not scored.
"""
from collections import defaultdict

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric

from ...registry import METRICS

#: the SSIM constants for data range 1 and the window (scikit-image's defaults)
_C1, _C2, _WIN = 0.01 ** 2, 0.03 ** 2, 7


def warp_bilinear(img, flow):
    """``img`` (N, C, H, W) gathered at x + flow(x) (flow (N, 2, H, W), (dx, dy) in pixels),
    bilinear, zero outside."""
    n, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=img.dtype), torch.arange(w, dtype=img.dtype),
                            indexing='ij')
    gx = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    gy = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    return F.grid_sample(img, torch.stack((gx, gy), -1), mode='bilinear', padding_mode='zeros',
                         align_corners=True)


def _symmetric_pad(x, r):
    """scipy.ndimage's 'reflect' (d c b a | a b c d) padding of the last two dims by ``r``."""
    h, w = x.shape[-2:]

    def reflected(n):
        return torch.cat([torch.arange(r - 1, -1, -1), torch.arange(n),
                          torch.arange(n - 1, n - r - 1, -1)])

    rows, cols = reflected(h), reflected(w)
    return x[..., rows.clamp(0, h - 1), :][..., cols.clamp(0, w - 1)]


def ssim_map(a, b):
    """scikit-image's full SSIM map (N, C, H, W) of images in [0, 1] (7x7 uniform window,
    sample covariance, 'reflect' borders), float64."""
    a, b = a.double(), b.double()
    r = _WIN // 2
    stack = _symmetric_pad(torch.cat([a, b, a * a, b * b, a * b], 1), r)
    means = F.avg_pool2d(stack, _WIN, stride=1)
    ux, uy, uxx, uyy, uxy = means.split(a.shape[1], 1)
    norm = _WIN * _WIN / (_WIN * _WIN - 1)
    vx, vy, vxy = norm * (uxx - ux * ux), norm * (uyy - uy * uy), norm * (uxy - ux * uy)
    return ((2 * ux * uy + _C1) * (2 * vxy + _C2)) / ((ux * ux + uy * uy + _C1) * (vx + vy + _C2))


def alignment_scores(gt, displacement, grid):
    """Masked PSNR and SSIM of every frame t >= 1 of a sequence.

    Args:
        gt (Tensor): (T, 3, H, W) sharp frames in [0, 1].
        displacement (Tensor): (T, 2, h, w) displacement of frame t to t-1, in full-resolution
            pixels, on a grid ``grid`` times coarser than the frames (at least (H, W) / grid).
        grid (int): 1 or 4.

    Returns:
        dict[int, tuple[float, float]]: {t: (PSNR, SSIM)} of frames t = 1..T-1, t their
        position in ``gt``; a frame the warp leaves empty (every pixel fetched from outside
        the frame) has no score and is not in it.
    """
    gt = gt.double()
    num, _, h, w = gt.shape
    flow = displacement.double()
    if grid > 1:
        flow = flow.repeat_interleave(grid, -2).repeat_interleave(grid, -1)
    flow = flow[..., :h, :w]
    scores = {}
    for t in range(1, num):
        warped = warp_bilinear(gt[t - 1:t], flow[t:t + 1])
        mask = warp_bilinear(torch.ones_like(gt[t - 1:t]), flow[t:t + 1])
        small = [F.adaptive_avg_pool2d(x, (h // 4, w // 4))
                 for x in (warped, mask, gt[t:t + 1])]
        warped, mask, target = small
        weight = mask.sum()
        if weight <= 0:
            continue
        mse = ((warped - target) ** 2 * mask).sum() / weight
        psnr = float('inf') if mse == 0 else float(10 * torch.log10(1 / mse))
        ssim = float((ssim_map(warped, target) * mask).sum() / weight)
        scores[t] = (psnr, ssim)
    return scores


@METRICS.register_module()
class MCAlignmentMetric(BaseMetric):
    """Inter-frame alignment accuracy of the motion compensation (see the module docstring).

    Reads the restorer's ``predict`` outputs: ``gt`` (T, 3, H, W) and the MC head's
    ``displacement`` (T, 2, h, w) with ``displacement_grid``. ``compute_metrics`` gives
    ``align_PSNR`` / ``align_SSIM`` (the mean over all scored frames), or nothing when the MC
    head yields no displacement (:attr:`applicable` is then False); :attr:`sequence_table`
    holds the per-sequence means.

    Args:
        collect_device (str): 'cpu' or 'gpu', for gathering results across ranks.
        prefix (str | None): prefix of the metric names in logs.
    """

    # '' (no prefix) rather than mmengine's None, which warns at every build that none is set
    default_prefix = ''
    #: the names :meth:`compute_metrics` gives, when applicable
    metric_keys = ('align_PSNR', 'align_SSIM')
    #: applicable only to MC heads that give a displacement (``BaseMCHead.displacement``)
    needs_displacement = True

    def __init__(self, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.applicable = None
        self.sequence_table, self.overall = [], None

    def process(self, data_batch, data_samples):
        for i, out in enumerate(data_samples):
            if 'displacement' not in out or 'gt' not in out:
                self.results.append(dict(key=str(out.get('key', i)), frames=[]))
                continue
            scores = alignment_scores(out['gt'].float(), out['displacement'],
                                      out['displacement_grid'])
            indices = list(out.get('frame_indices', range(out['gt'].shape[0])))
            self.results.append(dict(key=str(out.get('key', i)), applicable=True,
                                     frames=[(int(indices[t]), p, s)
                                             for t, (p, s) in scores.items()]))

    def compute_metrics(self, results):
        self.applicable = any(r.get('applicable') for r in results)
        if not self.applicable:
            self.sequence_table, self.overall = [], None
            return {}
        frames = defaultdict(dict)
        for r in results:
            for f, p, s in r['frames']:
                frames[r['key']][f] = (p, s)  # a frame scored twice (padded ranks) counts once
        self.sequence_table = []
        for key in sorted(frames):
            values = torch.tensor(list(frames[key].values()), dtype=torch.float64)
            self.sequence_table.append(dict(sequence=key, frames=len(values),
                                            PSNR=values[:, 0].mean().item(),
                                            SSIM=values[:, 1].mean().item()))
        every = torch.tensor([v for key in frames for v in frames[key].values()],
                             dtype=torch.float64)
        self.overall = dict(sequence='overall', frames=len(every), PSNR=every[:, 0].mean().item(),
                            SSIM=every[:, 1].mean().item())
        return dict(align_PSNR=self.overall['PSNR'], align_SSIM=self.overall['SSIM'])
