"""Video deblurring dataset over a DVD/GoPro/REDS folder tree or its LMDBs.

The sample contract (what the restorer and the clip transforms expect from any dataset; a new
dataset class gives the same)::

    inputs        (T + 4, 3, H, W) uint8 blurry frames: the T target frames and CONTEXT = 2
                  context frames each side (indices clamped to the sequence, or to the clip's
                  first frame on the left with ``clamp_context='clip'``); float32 in [0, 1]
                  after ClipGaussianNoise
    data_samples  gt (T, 3, H, W) uint8 sharp frames of the targets; key (the sequence name);
                  frame_indices (T ints); optionally flow (T, 2, H, W) float32: the sharp
                  frames' optical flow t -> t-1 in pixels, for the motion loss

Before the pipeline the same arrays are channels-last ((T + 4, H, W, 3) etc.): the transforms
of :mod:`mtu_toolkit.datasets.transforms` act on them identically across the clip.
"""
import os
import os.path as osp

import numpy as np
import torch
from mmengine.dataset import Compose
from torch.utils.data import Dataset

from ..models.window import padded_indices
from ..registry import DATASETS, TRANSFORMS
from .errors import DatasetError
from .frame_io import decode_rgb
from .frame_store import FolderStore, LmdbStore, check_pairs
from .layouts import build_layout
from .lmdb_writer import build_flow_lmdb, flow_cache_outdated, flow_cache_stamp

#: where a folder tree caches its flow: ``<data_root>/.mtu_flow/<split>.lmdb``
FLOW_CACHE_DIR = '.mtu_flow'

#: how training clips are drawn (see :class:`VideoDeblurDataset`)
SAMPLINGS = ('random', 'grid')


@DATASETS.register_module()
class VideoDeblurDataset(Dataset):
    """Clips of blurry/sharp frame pairs (training) or whole sequences (testing).

    Args:
        data_root (str): the dataset tree (backend 'disk') or the LMDB root made by
            ``tools/dataset_converters/convert_to_lmdb.py`` (backend 'lmdb':
            ``<data_root>/<split>/{blur,sharp[,flow]}.lmdb``).
        layout (str): a registered layout, 'dvd', 'gopro' or 'reds' (disk backend only).
        split (str): 'train', 'test', 'val', ...
        backend (str): 'disk' or 'lmdb'.
        num_frames (int | None): T target frames per training clip; None gives whole sequences.
        sampling (str): how clips of ``num_frames`` are drawn. 'grid' (the reference
            implementation's): every sequence is cut into consecutive clips starting at
            0, T, 2T, ... (the frames after the last whole clip are not used), each clip one
            sample, so an epoch sees every clip once and a sequence weighs by its length;
            ``length`` is ignored. 'random': ``length`` samples an epoch, each a sequence and a
            random start; every sequence is drawn equally often: ``length // S`` times an epoch
            (S sequences), and the last ``length % S`` samples draw theirs at random.
        length (int | None): samples per epoch for 'random' clips (default 100 per sequence).
        clamp_context (str): where the left context of a clip comes from: 'sequence' (the
            frames before the clip, clamped at the sequence's start) or 'clip' (clamped to the
            clip's first frame, the paper's I_0 = I_1 at a clip start, as the reference trains).
            Whole sequences clamp at their ends either way.
        with_flow (bool): add ``data_samples['flow']`` (T, 2, H, W) float32, the DIS flow of
            the sharp frames (see ``flow.py``), for the motion loss. Read from ``flow_lmdb``,
            else ``<data_root>/<split>/flow.lmdb`` (backend 'lmdb', made by the converter's
            ``--flow``) or ``<data_root>/.mtu_flow/<split>.lmdb`` (backend 'disk', computed
            here once, on first use, and cached).
        flow_lmdb (str | None): an explicit flow LMDB.
        blur_lmdb, sharp_lmdb (str | None): explicit blurry / sharp LMDBs (backend 'lmdb'),
            e.g. BasicSR's ``REDS/train_blur.lmdb`` and ``train_sharp.lmdb`` (its per-frame
            ``meta_info.txt`` is read as well).
        pipeline (list[dict]): clip transforms (``ClipRandomCrop`` ...).

    A sample follows the contract of the module docstring.
    """

    def __init__(self, data_root, layout='dvd', split='train', backend='disk', num_frames=None,
                 sampling='random', length=None, clamp_context='sequence', with_flow=False,
                 flow_lmdb=None, blur_lmdb=None, sharp_lmdb=None, pipeline=()):
        if sampling not in SAMPLINGS:
            raise ValueError(f'sampling must be one of {SAMPLINGS}, got {sampling!r}')
        if clamp_context not in ('sequence', 'clip'):
            raise ValueError(f"clamp_context must be 'sequence' or 'clip', got {clamp_context!r}")
        if backend == 'disk':
            layout = build_layout(layout)
            self.blur = FolderStore(data_root, layout, split, 'blur')
            self.sharp = FolderStore(data_root, layout, split, 'sharp')
        elif backend == 'lmdb':
            self.blur = LmdbStore(blur_lmdb or osp.join(data_root, split, 'blur.lmdb'))
            self.sharp = LmdbStore(sharp_lmdb or osp.join(data_root, split, 'sharp.lmdb'))
        else:
            raise ValueError(f"backend must be 'disk' or 'lmdb', got {backend!r}")
        self.seqs = check_pairs(self.blur, self.sharp, data_root, split)
        self.flow = self._flow_store(data_root, split, backend, flow_lmdb) if with_flow else None
        self.names = sorted(self.seqs)
        self.num_frames = num_frames
        self.sampling = sampling
        self.clamp_context = clamp_context
        if num_frames is not None:
            short = [s for s in self.names if self.seqs[s] < num_frames]
            if short:
                raise DatasetError(f'{data_root} ({split}): sequences {short} have fewer than '
                                   f'num_frames={num_frames} frames')
        # 'grid': (sequence, first target) of every clip
        self.clips = [(seq, start) for seq in self.names
                      for start in range(0, self.seqs[seq] - num_frames + 1, num_frames)
                      ] if num_frames and sampling == 'grid' else []
        self.length = length or 100 * len(self.names)
        self.pipeline = Compose([TRANSFORMS.build(t) if isinstance(t, dict) else t
                                 for t in pipeline])
        self.metainfo = dict(sequences=self.names, split=split)

    def _flow_store(self, data_root, split, backend, flow_lmdb):
        """The flow LMDB of the split; a folder tree's is computed on first use (in the main
        process, before any worker starts) and reused afterwards, never per epoch. Processes
        that compute it at once (DDP ranks) each write their own temporary; the first whole
        one renamed in is the cache, and no reader sees a partial one."""
        if flow_lmdb is None and backend == 'disk':
            path = osp.join(data_root, FLOW_CACHE_DIR, f'{split}.lmdb')
            stamp = flow_cache_stamp(self.sharp)  # frames replaced since: computed again
            why = flow_cache_outdated(path, self.seqs, stamp)
            if why is not None:
                os.makedirs(osp.dirname(path), exist_ok=True)
                build_flow_lmdb(self.sharp, self.seqs, path, stamp, why)
        else:
            path = flow_lmdb or osp.join(data_root, split, 'flow.lmdb')
            if not osp.isdir(path):
                raise FileNotFoundError(f'flow LMDB {path} does not exist: convert the dataset '
                                        'with tools/dataset_converters/convert_to_lmdb.py --flow')
        store = LmdbStore(path)
        if store.sequences() != self.seqs:
            raise DatasetError(f'{path}: its sequences/frame counts differ from the frames of '
                               f'{data_root} ({split})')
        return store

    def __len__(self):
        if not self.num_frames:
            return len(self.names)
        return len(self.clips) if self.sampling == 'grid' else self.length

    def _frame(self, store, seq, index):
        return decode_rgb(store.get(seq, index), store.where(seq, index))

    def _clip(self, idx):
        """(sequence, first target, number of targets) of sample ``idx``."""
        if not self.num_frames:
            seq = self.names[idx]
            return seq, 0, self.seqs[seq]
        if self.sampling == 'grid':
            seq, start = self.clips[idx]
            return seq, start, self.num_frames
        rounds = self.length - self.length % len(self.names)  # samples in whole rounds
        seq = self.names[idx % len(self.names) if idx < rounds
                         else np.random.randint(len(self.names))]
        start = np.random.randint(0, self.seqs[seq] - self.num_frames + 1)
        return seq, start, self.num_frames

    def __getitem__(self, idx):
        seq, start, count = self._clip(idx)
        n = self.seqs[seq]
        targets = list(range(start, start + count))
        first = start if self.clamp_context == 'clip' and self.num_frames else 0
        context = padded_indices(n, start, count, first=first)
        blur = self._same_size({i: self._frame(self.blur, seq, i) for i in set(context)}, seq)
        results = dict(inputs=np.stack([blur[i] for i in context]), key=seq,
                       gt=np.stack([self._check_size(self._frame(self.sharp, seq, i), blur[i],
                                                     seq, i, self.sharp) for i in targets]))
        if self.flow is not None:
            results['flow'] = np.stack([self._check_size(self.flow.get_flow(seq, i), blur[i],
                                                         seq, i, self.flow)
                                        for i in targets])
        results = self.pipeline(results)
        samples = dict(gt=_chw(results['gt']), key=seq, frame_indices=targets)
        if 'flow' in results:
            samples['flow'] = _chw(results['flow'])
        return dict(inputs=_chw(results['inputs']), data_samples=samples)

    def _same_size(self, blur, seq):
        """``blur`` ({index: (H, W, 3)} blurry frames of ``seq``) if all are the size of its
        first frame (the sequence's first one in a whole sequence)."""
        first = min(blur)
        for i in sorted(blur):
            if blur[i].shape[:2] != blur[first].shape[:2]:
                raise DatasetError(f'{self.blur.where(seq, i)} is {blur[i].shape[:2]} but '
                                   f'{self.blur.where(seq, first)}, an earlier frame of the same '
                                   f'sequence, is {blur[first].shape[:2]}')
        return blur

    def _check_size(self, value, blur, seq, i, store):
        """``value`` (H, W, C), frame ``i`` of ``seq`` in ``store`` (the sharp frames, the
        flow), if it is the size of its blurry frame ``blur``."""
        if value.shape[:2] != blur.shape[:2]:
            raise DatasetError(f'{store.where(seq, i)} is {value.shape[:2]} but its blurry '
                               f'frame {self.blur.where(seq, i)} is {blur.shape[:2]}')
        return value


def _chw(a):
    """(T, H, W, C) numpy -> (T, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()
