"""Convert a DVD/GoPro/REDS tree into LMDBs, atomically (temporary name, renamed when whole)."""
import glob
import os
import os.path as osp
import shutil

import lmdb
import numpy as np

from ..fileio import remove_stale_temporaries
from ..progress import ProgressLine
from .frame_io import decode_rgb, encode_png
from .flow import sharp_flow
from .frame_store import FolderStore, check_pairs, close_lmdb, frame_key
from .layouts import detect_layout, list_splits


class LmdbBuilder:
    """Writes one LMDB under ``<path>.tmp-<pid>`` and renames it to ``path`` on :meth:`commit`.

    Until the rename nothing exists at ``path`` (or the previous complete database stays there),
    so an interrupted run never leaves a database that looks whole; the temporary folders of
    interrupted runs are removed when the next run starts.
    """

    #: LMDB reserves address space, not disk: a sparse 1 TiB map fits any dataset here
    MAP_SIZE = 1 << 40
    #: values per write transaction
    BATCH = 64

    def __init__(self, path):
        self.path = path
        self.tmp = f'{path}.tmp-{os.getpid()}'
        remove_stale_temporaries(f'{glob.escape(path)}.tmp-*')  # left by interrupted runs
        self.env = lmdb.open(self.tmp, map_size=self.MAP_SIZE)
        self.meta = {}
        self.txn = self.env.begin(write=True)
        self._pending = 0
        self.committed = False

    def put(self, seq, index, value, shape):
        """Store frame ``index`` of ``seq`` (frames of a sequence come in order 0, 1, ...)."""
        count, first_shape = self.meta.get(seq, (0, shape))
        if index != count:
            raise ValueError(f'{self.path}: frame {index} of {seq} put after {count} frames')
        if tuple(shape) != tuple(first_shape):
            raise ValueError(f'{self.path}: frame {index} of {seq} is {tuple(shape)} but its '
                             f'frame 0 is {tuple(first_shape)}')
        self.txn.put(frame_key(seq, index).encode(), value)
        self.meta[seq] = (count + 1, tuple(shape))
        self._pending += 1
        if self._pending == self.BATCH:
            self.txn.commit()
            self.txn, self._pending = self.env.begin(write=True), 0

    def commit(self):
        """Finish the database and move it to its final name (replacing an older one)."""
        self.txn.commit()
        self.env.close()
        with open(osp.join(self.tmp, 'meta_info.txt'), 'w') as f:
            for seq, (count, shape) in sorted(self.meta.items()):
                f.write(f'{seq} {count} ({",".join(map(str, shape))})\n')
        close_lmdb(self.path)  # a reader of the old database in this process reopens the new
        if osp.exists(self.path):
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        self.committed = True

    def abort(self):
        """Drop the temporary database (nothing once committed)."""
        if self.committed:
            return
        try:
            self.txn.abort()
            self.env.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def flow_value(sharp, prev):
    """(value bytes, shape) of the flow of sharp frame t to t-1 (zeros when ``prev`` is None)."""
    flow = np.zeros(sharp.shape[:2] + (2,), np.float32) if prev is None \
        else sharp_flow(sharp, prev)
    return flow.astype(np.float16).tobytes(), flow.shape


def _check_frame_shape(store, seq, i, frame, first):
    if frame.shape != first.shape:
        raise ValueError(f'{store.where(seq, i)} is {frame.shape[:2]} but frame 0 of the '
                         f'sequence ({store.where(seq, 0)}) is {first.shape[:2]}; the frames '
                         'of a sequence must have one size')


def prepare_output(out, splits):
    """Check, before any work, that the LMDBs of ``splits`` can be written under ``out``, and
    make the folders; one-line errors naming the path at fault. Returns the folders it made
    (removed again if the conversion fails)."""
    if osp.exists(out) and not osp.isdir(out):
        raise ValueError(f'{out}: the output root is a file, not a folder')
    for split in splits:
        folder = osp.join(out, split)
        if osp.exists(folder) and not osp.isdir(folder):
            raise ValueError(f'{folder}: a file stands where the split\'s folder goes')
        for name in ('blur', 'sharp', 'flow'):
            path = osp.join(folder, f'{name}.lmdb')
            if osp.exists(path) and not osp.isdir(path):
                raise ValueError(f'{path}: a file stands where the database goes')
    made = []
    try:
        for folder in [out] + [osp.join(out, split) for split in splits]:
            if not osp.isdir(folder):
                os.makedirs(folder)
                made.append(folder)
        for folder in [osp.join(out, split) for split in splits]:
            probe = osp.join(folder, f'.write-test-{os.getpid()}')
            with open(probe, 'w'):
                pass
            os.remove(probe)
    except OSError as err:
        remove_empty(made)
        raise ValueError(f'{err.filename or out}: cannot write the output there '
                         f'({err.strerror or err})') from None
    return made


def remove_empty(folders):
    """Remove the folders this run made, deepest first, where they are still empty."""
    for folder in sorted(folders, key=len, reverse=True):
        try:
            os.rmdir(folder)
        except OSError:
            pass


def write_split(src_stores, out, split, with_flow, builders):
    """Write ``<out>/<split>/{blur,sharp[,flow]}.lmdb`` under temporary names (their builders
    are appended to ``builders``, to be committed or aborted by the caller)."""
    blur, sharp, seqs = src_stores
    names = ['blur', 'sharp'] + (['flow'] if with_flow else [])
    mine = {k: LmdbBuilder(osp.join(out, split, f'{k}.lmdb')) for k in names}
    builders.extend(mine.values())
    print(f'{split}: {len(seqs)} sequences, {sum(seqs.values())} frames')
    bar = ProgressLine(sum(seqs.values()), unit='frames')
    for seq, n in seqs.items():
        prev = first = None
        for i in range(n):
            b = decode_rgb(blur.get(seq, i), blur.where(seq, i))
            s = decode_rgb(sharp.get(seq, i), sharp.where(seq, i))
            if b.shape != s.shape:
                raise ValueError(f'{sharp.where(seq, i)} is {s.shape[:2]} but its blurry '
                                 f'frame {blur.where(seq, i)} is {b.shape[:2]}')
            first = b if first is None else first
            _check_frame_shape(blur, seq, i, b, first)
            mine['blur'].put(seq, i, encode_png(b), b.shape)
            mine['sharp'].put(seq, i, encode_png(s), s.shape)
            if with_flow:
                mine['flow'].put(seq, i, *flow_value(s, prev))
            prev = s
            bar.update()
    bar.close()


def build_flow_lmdb(sharp, seqs, path):
    """Compute the flow of every frame of ``sharp`` (a frame store) into the LMDB ``path``."""
    builder = LmdbBuilder(path)
    try:
        print(f'computing the optical flow of {sum(seqs.values())} sharp frames once, '
              f'cached in {path}')
        bar = ProgressLine(sum(seqs.values()), unit='frames')
        for seq, n in seqs.items():
            prev = None
            for i in range(n):
                s = decode_rgb(sharp.get(seq, i), sharp.where(seq, i))
                builder.put(seq, i, *flow_value(s, prev))
                prev = s
                bar.update()
        bar.close()
        builder.commit()
    except BaseException:
        builder.abort()
        raise


def convert_dataset(src, out, layout='auto', splits=None, with_flow=False):
    """Convert every split (or ``splits``) of a dataset tree; returns {split: {seq: frames}}.

    All or nothing: every split's pairs are checked before any database is written, the
    output is checked writable before any work, the databases are written under temporary
    names and renamed only when all of them are complete (a failure removes them, and the
    folders this run made). Without ``with_flow`` an older ``flow.lmdb`` of a split is
    removed, as it would not match the new frames.
    """
    layout = detect_layout(src) if layout == 'auto' else layout
    splits = splits or list_splits(src, layout)
    plan = {}
    for split in splits:
        blur = FolderStore(src, layout, split, 'blur')
        sharp = FolderStore(src, layout, split, 'sharp')
        plan[split] = (blur, sharp, check_pairs(blur, sharp, src, split))
    made = prepare_output(out, splits)
    builders = []
    try:
        for split, stores in plan.items():
            write_split(stores, out, split, with_flow, builders)
        for builder in builders:
            builder.commit()
    except BaseException:
        for builder in builders:
            builder.abort()
        remove_empty(made)
        raise
    if not with_flow:
        for split in splits:
            stale = osp.join(out, split, 'flow.lmdb')
            if osp.isdir(stale):
                close_lmdb(stale)
                shutil.rmtree(stale)
    return {split: stores[2] for split, stores in plan.items()}
