"""PSNR / SSIM of restored videos: per frame, per sequence and over all frames."""
from collections import defaultdict

import torch
from mmengine.evaluator import BaseMetric

from ...checked_registry import ComponentArgumentError
from ...registry import METRICS
from .protocols import ALIGN_SUMMARY, get_protocol


@METRICS.register_module()
class VideoRestorationMetric(BaseMetric):
    """Scores the restorer's ``predict`` outputs against their sharp frames.

    Each output is a dict ``pred`` (T, 3, H, W) float in [0, 1], ``gt`` (T, 3, H, W) float in
    [0, 1], ``key`` (sequence name) and ``frame_indices`` (T ints, positions in the sequence).
    Predictions are clamped to [0, 1]. How frames are scored is the ``protocol``
    (``protocols.py``, docs/evaluation.md): ``toolkit`` (default; the toolkit's own PSNR and
    Gaussian-window SSIM), ``reference`` (the reference implementation's ``eval.py``) or
    ``matlab`` (its MATLAB evaluation, which produced the paper's tables), each optionally after
    Koehler et al.'s alignment (``align``). The overall ``PSNR`` / ``SSIM`` average over all
    scored frames, so long sequences weigh more. After :meth:`evaluate` (main process)
    :attr:`sequence_table` holds the per-sequence rows (sequence, frames, PSNR, SSIM),
    :attr:`overall` the all-frames row, :attr:`frame_table` the per-frame values (and, aligned,
    the shift applied) and :attr:`protocol_info` what produced them, for tools/test.py.

    Args:
        protocol (str): 'toolkit', 'reference' or 'matlab'.
        align (bool): Koehler et al.'s alignment before scoring.
        device (str | None): where PSNR/SSIM are computed; None keeps the outputs' device (CPU).
            'cuda' makes SSIM of 720p frames ~100x faster on a GPU. A device this machine does
            not have (or a name torch does not know) is refused when the metric is built
            (:class:`~mtu_toolkit.checked_registry.ComponentArgumentError`), not at the first
            frame scored.
        collect_device (str): 'cpu' or 'gpu', for gathering results across ranks.
        prefix (str | None): prefix of the metric names in logs.
    """
    # '' (no prefix) rather than mmengine's None, which warns at every build that none is set
    default_prefix = ''
    #: the names :meth:`compute_metrics` gives (``save_best`` is checked against them)
    metric_keys = ('PSNR', 'SSIM')

    def __init__(self, protocol='toolkit', align=False, device=None, collect_device='cpu',
                 prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.protocol = get_protocol(protocol)
        self.align = bool(align)
        self.device = None if device is None else self._parse_device(device)
        self.sequence_table = []
        self.frame_table = []
        self.overall = None

    @staticmethod
    def _parse_device(device):
        """``torch.device`` of ``device``; a device that is not here is one line, when built."""
        from ...apis.errors import DeviceError  # here: the apis package imports the engine
        from ...apis.init_restorer import parse_device
        try:
            return parse_device(device, instead="give device='cpu' or leave it unset (None: "
                                "the outputs' device)")
        except DeviceError as err:
            raise ComponentArgumentError(f'VideoRestorationMetric: device={device!r}: '
                                         f'{err}') from None

    @property
    def protocol_info(self):
        """What produced the tables: protocol name and summary, alignment."""
        return dict(protocol=self.protocol.name, align=self.align,
                    description=self.protocol.summary + (
                        f'; {ALIGN_SUMMARY}; aligned pairs scored by '
                        f'{self.protocol.aligned_scores}' if self.align else ''))

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
            key = str(out.get('key', f'seq{len(self.results)}'))
            indices = [int(f) for f in out.get('frame_indices', range(pred.shape[0]))]
            self._check_crop(key, pred.shape)
            self._check_size(key, pred.shape)
            if self.protocol.skip_first_frame:
                keep = [i for i, f in enumerate(indices) if f != 0]
                if not keep:
                    continue
                if len(keep) < len(indices):
                    pred, gt = pred[keep], gt[keep]
                    indices = [indices[i] for i in keep]
            # small records: a few numbers per frame, never the frames
            self.results.append(dict(key=key, frame_indices=indices,
                                     **self.protocol.score(pred, gt, align=self.align)))

    def _check_crop(self, key, shape):
        m = self.protocol.crop_multiple
        if m and (shape[-2] % m or shape[-1] % m):
            raise ComponentArgumentError(
                f'sequence {key!r}: frames of {tuple(shape[-2:])} are not a multiple of {m}: '
                f'protocol {self.protocol.name!r} scores frames cropped top-left to a multiple '
                f"of {m} before inference; add dict(type='ClipCropToMultiple', multiple={m}) "
                "to the dataset's pipeline (tools/test.py and tools/train.py add it)")

    def _check_size(self, key, shape):
        least = self.protocol.min_size(self.align)
        if min(shape[-2:]) < least:
            from ...datasets.errors import DatasetError  # (the datasets import the engine)
            raise DatasetError(
                f'sequence {key!r}: frames of {shape[-2]}x{shape[-1]} px (height x width) are '
                f'smaller than the {least}x{least} SSIM window of protocol '
                f'{self.protocol.name!r}{" with --align" if self.align else ""}')

    def compute_metrics(self, results):
        """Per-sequence tables and the overall means (over all frames)."""
        frames = defaultdict(dict)  # key -> frame index -> (psnr, ssim[, shift])
        for res in results:
            shifts = res.get('shift', [None] * len(res['psnr']))
            for f, p, s, d in zip(res['frame_indices'], res['psnr'], res['ssim'], shifts):
                # a frame scored twice (padded ranks) counts once
                frames[res['key']][f] = (p, s) if d is None else (p, s, d)
        self.frame_table = [dict(sequence=key, frame=f, PSNR=v[0], SSIM=v[1],
                                 **({'shift': v[2]} if len(v) > 2 else {}))
                            for key in sorted(frames) for f, v in sorted(frames[key].items())]
        self.sequence_table = []
        for key in sorted(frames):
            values = torch.tensor([v[:2] for v in frames[key].values()], dtype=torch.float64)
            self.sequence_table.append(dict(sequence=key, frames=len(values),
                                            PSNR=values[:, 0].mean().item(),
                                            SSIM=values[:, 1].mean().item()))
        if not self.frame_table:
            from ...datasets.errors import DatasetError
            why = (f': protocol {self.protocol.name!r} skips the first frame of every sequence, '
                   'and every sequence has one frame only' if self.protocol.skip_first_frame
                   else '')
            raise DatasetError(f'VideoRestorationMetric: no frame was scored{why}')
        all_values = torch.tensor([[r['PSNR'], r['SSIM']] for r in self.frame_table],
                                  dtype=torch.float64)
        self.overall = dict(sequence='overall', frames=len(all_values),
                            PSNR=all_values[:, 0].mean().item(),
                            SSIM=all_values[:, 1].mean().item())
        return dict(PSNR=self.overall['PSNR'], SSIM=self.overall['SSIM'])
