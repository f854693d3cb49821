"""One backend for frames kept in a folder tree or in an LMDB (BasicSR-style, with meta_info).

An LMDB made by ``tools/dataset_converters/convert_to_lmdb.py`` holds one split and side; keys
are ``<seq>/<frame:08d>`` (frame = index in the sequence), values PNG bytes (or raw float16
flow), and ``meta_info.txt`` beside ``data.mdb`` has a line ``<seq> <num_frames> (<h>,<w>,<c>)``
per sequence.
"""
import os.path as osp

import lmdb
import numpy as np

from .frame_io import read_file
from .layouts import list_frames, list_sequences, side_dir


def frame_key(seq, index):
    return f'{seq}/{index:08d}'


def read_meta_info(lmdb_path):
    """{seq: (num_frames, (h, w, c))} from ``<lmdb_path>/meta_info.txt``."""
    path = osp.join(lmdb_path, 'meta_info.txt')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{lmdb_path}: no meta_info.txt (not an mtu_toolkit LMDB, or '
                                'an unfinished conversion)')
    meta = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                seq, count, shape = line.split()
                meta[seq] = (int(count), tuple(int(v) for v in shape.strip('()').split(',')))
            except ValueError:
                raise ValueError(f'{path}:{n}: expected "<seq> <num_frames> (<h>,<w>,<c>)", '
                                 f'got {line.strip()!r}') from None
    return meta


class FolderStore:
    """Frames of one side ('blur' | 'sharp') of a split of a DVD/GoPro/REDS folder tree."""

    def __init__(self, root, layout, split, side):
        self.root, self.layout, self.split, self.side = root, layout, split, side
        self._files = {}
        for seq in list_sequences(root, layout, split):
            folder = side_dir(root, layout, split, seq, side)
            self._files[seq] = [osp.join(folder, n) for n in list_frames(folder)]

    def sequences(self):
        return {seq: len(files) for seq, files in self._files.items()}

    def where(self, seq, index):
        return self._files[seq][index]

    def get(self, seq, index):
        return read_file(self._files[seq][index])


class LmdbStore:
    """Frames of one LMDB; opened lazily (read-only, no lock) so it survives worker forks."""

    def __init__(self, path):
        if not osp.isdir(path) or not osp.isfile(osp.join(path, 'data.mdb')):
            raise FileNotFoundError(f'LMDB {path} does not exist (no data.mdb)')
        self.path = path
        self.meta = read_meta_info(path)
        self._env = None
        self._check_keys()

    def _txn(self):
        if self._env is None:
            self._env = lmdb.open(self.path, readonly=True, lock=False, readahead=False,
                                  meminit=False)
        return self._env.begin(write=False)

    def _check_keys(self):
        """meta_info and the keys must agree: same total, first and last frame of each seq."""
        with self._txn() as txn:
            entries = txn.stat()['entries']
            for seq, (count, _) in self.meta.items():
                for i in (0, count - 1):
                    if txn.get(frame_key(seq, i).encode()) is None:
                        raise ValueError(f'{self.path}: meta_info.txt lists {seq} with {count} '
                                         f'frames but key {frame_key(seq, i)} is missing')
        total = sum(c for c, _ in self.meta.values())
        if entries != total:
            raise ValueError(f'{self.path}: meta_info.txt lists {total} frames but the LMDB '
                             f'holds {entries} keys')

    def sequences(self):
        return {seq: count for seq, (count, _) in self.meta.items()}

    def where(self, seq, index):
        return f'{self.path}:{frame_key(seq, index)}'

    def get(self, seq, index):
        with self._txn() as txn:
            buf = txn.get(frame_key(seq, index).encode())
        if buf is None:
            raise KeyError(f'{self.path}: no key {frame_key(seq, index)}')
        return buf

    def get_flow(self, seq, index):
        """(H, W, 2) float32 flow stored as raw float16."""
        h, w, c = self.meta[seq][1]
        return np.frombuffer(self.get(seq, index), np.float16).reshape(h, w, c).astype(np.float32)

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_env'] = None
        return state
