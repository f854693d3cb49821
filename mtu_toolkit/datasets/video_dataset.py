"""Video deblurring dataset over a DVD/GoPro/REDS folder tree or its LMDBs."""
import os
import os.path as osp

import numpy as np
import torch
from mmengine.dataset import Compose
from torch.utils.data import Dataset

from ..registry import DATASETS, TRANSFORMS
from .frame_io import decode_rgb
from .frame_store import FolderStore, LmdbStore, check_pairs
from .layouts import LAYOUTS
from .lmdb_writer import build_flow_lmdb

#: where a folder tree caches its flow: ``<data_root>/.mtu_flow/<split>.lmdb``
FLOW_CACHE_DIR = '.mtu_flow'

#: frames of context each side of a clip (the model's 5-frame window)
CONTEXT = 2


@DATASETS.register_module()
class VideoDeblurDataset(Dataset):
    """Clips of blurry/sharp frame pairs (training) or whole sequences (testing).

    Args:
        data_root (str): the dataset tree (backend 'disk') or the LMDB root made by
            ``tools/dataset_converters/convert_to_lmdb.py`` (backend 'lmdb':
            ``<data_root>/<split>/{blur,sharp[,flow]}.lmdb``).
        layout (str): 'dvd', 'gopro' or 'reds' (disk backend only).
        split (str): 'train', 'test', 'val', ...
        backend (str): 'disk' or 'lmdb'.
        num_frames (int | None): T target frames per training clip; None gives whole sequences.
        length (int | None): samples per epoch for clips (default 100 per sequence).
        with_flow (bool): add ``data_samples['flow']`` (T, 2, H, W) float32, the DIS flow of
            the sharp frames (see ``flow.py``), for the motion loss. Read from ``flow_lmdb``,
            else ``<data_root>/<split>/flow.lmdb`` (backend 'lmdb', made by the converter's
            ``--flow``) or ``<data_root>/.mtu_flow/<split>.lmdb`` (backend 'disk', computed
            here once, on first use, and cached).
        flow_lmdb (str | None): an explicit flow LMDB.
        pipeline (list[dict]): clip transforms (``ClipRandomCrop`` ...).

    A sample: ``inputs`` uint8 (T+4, 3, H, W) (float32 after ClipGaussianNoise), the T targets
    with two context frames each side clamped at the sequence ends; ``data_samples``: ``gt``
    uint8 (T, 3, H, W), ``key``, ``frame_indices`` and optionally ``flow``.
    """

    def __init__(self, data_root, layout='dvd', split='train', backend='disk', num_frames=None,
                 length=None, with_flow=False, flow_lmdb=None, pipeline=()):
        if layout not in LAYOUTS:
            raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
        if backend == 'disk':
            self.blur = FolderStore(data_root, layout, split, 'blur')
            self.sharp = FolderStore(data_root, layout, split, 'sharp')
        elif backend == 'lmdb':
            self.blur = LmdbStore(osp.join(data_root, split, 'blur.lmdb'))
            self.sharp = LmdbStore(osp.join(data_root, split, 'sharp.lmdb'))
        else:
            raise ValueError(f"backend must be 'disk' or 'lmdb', got {backend!r}")
        self.seqs = check_pairs(self.blur, self.sharp, data_root, split)
        self.flow = self._flow_store(data_root, split, backend, flow_lmdb) if with_flow else None
        self.names = sorted(self.seqs)
        self.num_frames = num_frames
        if num_frames is not None:
            short = [s for s in self.names if self.seqs[s] < num_frames]
            if short:
                raise ValueError(f'{data_root} ({split}): sequences {short} have fewer than '
                                 f'num_frames={num_frames} frames')
        self.length = length or 100 * len(self.names)
        self.pipeline = Compose([TRANSFORMS.build(t) if isinstance(t, dict) else t
                                 for t in pipeline])
        self.metainfo = dict(sequences=self.names, split=split)

    def _flow_store(self, data_root, split, backend, flow_lmdb):
        """The flow LMDB of the split; a folder tree's is computed on first use (in the main
        process, before any worker starts) and reused afterwards, never per epoch."""
        if flow_lmdb is None and backend == 'disk':
            path = osp.join(data_root, FLOW_CACHE_DIR, f'{split}.lmdb')
            if not self._valid_flow(path):
                os.makedirs(osp.dirname(path), exist_ok=True)
                build_flow_lmdb(self.sharp, self.seqs, path)
        else:
            path = flow_lmdb or osp.join(data_root, split, 'flow.lmdb')
            if not osp.isdir(path):
                raise FileNotFoundError(f'flow LMDB {path} does not exist: convert the dataset '
                                        'with tools/dataset_converters/convert_to_lmdb.py --flow')
        store = LmdbStore(path)
        if store.sequences() != self.seqs:
            raise ValueError(f'{path}: its sequences/frame counts differ from the frames of '
                             f'{data_root} ({split})')
        return store

    def _valid_flow(self, path):
        """Whether a cached flow LMDB exists and matches the sequences (else it is rebuilt)."""
        try:
            return LmdbStore(path).sequences() == self.seqs
        except (FileNotFoundError, ValueError):
            return False

    def __len__(self):
        return self.length if self.num_frames else len(self.names)

    def _frame(self, store, seq, index):
        return decode_rgb(store.get(seq, index), store.where(seq, index))

    def __getitem__(self, idx):
        seq = self.names[idx % len(self.names)]
        n = self.seqs[seq]
        if self.num_frames:
            start = np.random.randint(0, n - self.num_frames + 1)
            targets = list(range(start, start + self.num_frames))
        else:
            targets = list(range(n))
        context = [min(max(i, 0), n - 1)
                   for i in range(targets[0] - CONTEXT, targets[-1] + CONTEXT + 1)]
        blur = {i: self._frame(self.blur, seq, i) for i in set(context)}
        results = dict(inputs=np.stack([blur[i] for i in context]), key=seq,
                       gt=np.stack([self._check_size(self._frame(self.sharp, seq, i), blur[i],
                                                     seq, i) for i in targets]))
        if self.flow is not None:
            results['flow'] = np.stack([self.flow.get_flow(seq, i) for i in targets])
        results = self.pipeline(results)
        samples = dict(gt=_chw(results['gt']), key=seq, frame_indices=targets)
        if 'flow' in results:
            samples['flow'] = _chw(results['flow'])
        return dict(inputs=_chw(results['inputs']), data_samples=samples)

    def _check_size(self, sharp, blur, seq, i):
        if sharp.shape != blur.shape:
            raise ValueError(f'{self.sharp.where(seq, i)} is {sharp.shape[:2]} but its blurry '
                             f'frame {self.blur.where(seq, i)} is {blur.shape[:2]}')
        return sharp


def _chw(a):
    """(T, H, W, C) numpy -> (T, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()
