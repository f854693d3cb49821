"""Convert a DVD/GoPro/REDS tree into LMDBs, atomically (temporary name, renamed when whole)."""
import glob
import os
import os.path as osp
import shutil

import lmdb
import numpy as np
from mmengine.utils import ProgressBar

from .frame_io import decode_rgb, encode_png
from .frame_store import FolderStore, frame_key
from .flow import sharp_flow
from .layouts import detect_layout, list_splits
from .video_dataset import check_pairs


class _LmdbBuilder:
    """Writes one LMDB under ``<path>.tmp-<pid>`` and renames it to ``path`` on :meth:`commit`."""

    #: LMDB reserves address space, not disk: a sparse 1 TiB map fits any dataset here
    MAP_SIZE = 1 << 40

    def __init__(self, path):
        self.path = path
        self.tmp = f'{path}.tmp-{os.getpid()}'
        for stale in glob.glob(f'{glob.escape(path)}.tmp-*'):
            shutil.rmtree(stale)  # left by an interrupted run
        self.env = lmdb.open(self.tmp, map_size=self.MAP_SIZE)
        self.meta = {}
        self.txn = self.env.begin(write=True)

    def put(self, seq, index, value, shape):
        self.txn.put(frame_key(seq, index).encode(), value)
        count, _ = self.meta.get(seq, (0, shape))
        self.meta[seq] = (count + 1, shape)
        if count % 50 == 49:
            self.txn.commit()
            self.txn = self.env.begin(write=True)

    def commit(self):
        self.txn.commit()
        self.env.close()
        with open(osp.join(self.tmp, 'meta_info.txt'), 'w') as f:
            for seq, (count, shape) in sorted(self.meta.items()):
                f.write(f'{seq} {count} ({",".join(map(str, shape))})\n')
        if osp.exists(self.path):
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)

    def abort(self):
        try:
            self.txn.abort()
            self.env.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def convert_split(src, out, layout, split, with_flow=False):
    """Write ``<out>/<split>/{blur,sharp[,flow]}.lmdb``; returns {seq: frames}."""
    blur, sharp = FolderStore(src, layout, split, 'blur'), FolderStore(src, layout, split, 'sharp')
    seqs = check_pairs(blur, sharp, src, split)
    os.makedirs(osp.join(out, split), exist_ok=True)
    names = ['blur', 'sharp'] + (['flow'] if with_flow else [])
    builders = {k: _LmdbBuilder(osp.join(out, split, f'{k}.lmdb')) for k in names}
    try:
        bar = ProgressBar(sum(seqs.values()))
        for seq, n in seqs.items():
            prev = None
            for i in range(n):
                b = decode_rgb(blur.get(seq, i), blur.where(seq, i))
                s = decode_rgb(sharp.get(seq, i), sharp.where(seq, i))
                if b.shape != s.shape:
                    raise ValueError(f'{sharp.where(seq, i)} is {s.shape[:2]} but its blurry '
                                     f'frame {blur.where(seq, i)} is {b.shape[:2]}')
                builders['blur'].put(seq, i, encode_png(b), b.shape)
                builders['sharp'].put(seq, i, encode_png(s), s.shape)
                if with_flow:
                    flow = np.zeros(s.shape[:2] + (2,), np.float32) if prev is None \
                        else sharp_flow(s, prev)
                    builders['flow'].put(seq, i, flow.astype(np.float16).tobytes(), flow.shape)
                prev = s
                bar.update()
        for b in builders.values():
            b.commit()
    except BaseException:
        for b in builders.values():
            b.abort()
        raise
    return seqs


def convert_dataset(src, out, layout='auto', splits=None, with_flow=False):
    """Convert every split (or ``splits``) of a dataset tree; returns {split: {seq: frames}}."""
    layout = detect_layout(src) if layout == 'auto' else layout
    splits = splits or list_splits(src, layout)
    return {split: convert_split(src, out, layout, split, with_flow) for split in splits}
