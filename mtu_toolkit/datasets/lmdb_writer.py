"""Convert a DVD/GoPro/REDS tree into LMDBs, atomically (temporary name, renamed when whole)."""
import errno
import glob
import os
import os.path as osp
import shutil
import warnings

import lmdb
import numpy as np

from ..fileio import pid_alive, remove_stale_temporaries, signals_held, temporary_path
from ..progress import ProgressLine
from .errors import DatasetError
from .frame_io import decode_rgb, encode_png
from .flow import sharp_flow
from .frame_store import FolderStore, check_pairs, close_lmdb, frame_key, lmdb_holds
from .layouts import build_layout, detect_layout, list_splits


#: the databases of a split (their temporaries are swept whichever ones a run writes)
DATABASES = ('blur', 'sharp', 'flow')


class LmdbBuilder:
    """Writes one LMDB under ``<path>.tmp-mtu<pid>-<n>`` (a name no other writer uses) and renames
    it to ``path`` on :meth:`commit`.

    Until the rename nothing exists at ``path`` (or the previous complete database stays there),
    so an interrupted run never leaves a database that looks whole; the temporary folders of
    interrupted runs are removed when the next run starts. Several databases that belong
    together (a split's blur, sharp and flow) are finished one by one and then swapped in
    together by :func:`commit_all`.
    """

    #: LMDB reserves address space, not disk: a sparse 1 TiB map fits any dataset here
    MAP_SIZE = 1 << 40
    #: values per write transaction
    BATCH = 64

    def __init__(self, path, extra_files=None):
        self.path = path
        self.tmp = temporary_path(path)
        sweep_leftovers(path)  # of interrupted runs
        self.env = lmdb.open(self.tmp, map_size=self.MAP_SIZE)
        self.meta = {}
        self.extra_files = dict(extra_files or {})  # {name: text} beside meta_info.txt
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

    def finish(self):
        """Write the last transaction and ``meta_info.txt`` (still under the temporary name)."""
        self.txn.commit()
        self.txn = None
        self.env.close()
        with open(osp.join(self.tmp, 'meta_info.txt'), 'w') as f:
            for seq, (count, shape) in sorted(self.meta.items()):
                f.write(f'{seq} {count} ({",".join(map(str, shape))})\n')
        for name, text in self.extra_files.items():
            with open(osp.join(self.tmp, name), 'w') as f:
                f.write(text)

    def commit(self):
        """Finish the database and move it to its final name (replacing an older one)."""
        commit_all([self])

    def abort(self):
        """Drop the temporary database (nothing once committed)."""
        if self.committed:
            return
        try:
            if self.txn is not None:
                self.txn.abort()
            self.env.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _aside(path):
    return f'{path}.old-mtu{os.getpid()}'


def commit_all(builders, remove=()):
    """Swap the finished databases of ``builders`` in for the old ones, all or none.

    Each builder is finished first (its last writes and ``meta_info.txt``); then, with SIGINT
    and SIGTERM held, each old database is renamed aside (``<path>.old-mtu<pid>``) and the new one
    renamed to its place, and the databases ``remove`` names (older ones that would no longer
    match) are renamed aside too. If a rename fails, those done are undone, so the old
    databases stay as they were and the error names the path: a database is never left new
    beside an old partner. The old ones are deleted last (one that cannot be is named in a
    warning; the next run over the folder removes it).
    """
    for builder in builders:
        builder.finish()
    moves = []  # (from, to) renames done, undone in reverse on failure
    with signals_held():
        try:
            for builder in builders:
                close_lmdb(builder.path)  # a reader in this process reopens the new one
                if osp.exists(builder.path):
                    os.replace(builder.path, _aside(builder.path))
                    moves.append((builder.path, _aside(builder.path)))
                os.replace(builder.tmp, builder.path)
                moves.append((builder.tmp, builder.path))
            for path in remove:
                if osp.exists(path):
                    close_lmdb(path)
                    os.replace(path, _aside(path))
                    moves.append((path, _aside(path)))
        except OSError as err:
            for src, dst in reversed(moves):
                os.replace(dst, src)
            raise DatasetError(f'{err.filename or builders[0].path}: cannot replace the '
                               f'database ({err.strerror or err}); the old databases are '
                               'unchanged') from None
        for builder in builders:
            builder.committed = True
    for src, dst in moves:
        if dst == _aside(src):
            shutil.rmtree(dst, ignore_errors=True)
            if osp.exists(dst):
                warnings.warn(f'{dst}: the replaced database could not be deleted; remove it '
                              'by hand (the new one is in place)')


def commit_first(builder, valid):
    """Move the finished database of ``builder`` to its path, where other processes may be
    putting the same database at the same time (DDP ranks building a cache): the first whole
    one to arrive stays.

    The rename is atomic and does not replace a database already there, so a reader finds no
    database or a whole one, never one half-written or being swapped. A database there that
    ``valid(path)`` accepts (another writer's) is kept and ours deleted; one it refuses (out of
    date) is moved aside and deleted, then ours renamed in.

    Returns:
        bool: whether ours was moved in.
    """
    builder.finish()
    with signals_held():
        while True:
            close_lmdb(builder.path)  # this process's handle: valid() reads what is there now
            try:
                os.rename(builder.tmp, builder.path)
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    shutil.rmtree(builder.tmp, ignore_errors=True)
                    raise DatasetError(f'{builder.path}: cannot be written '
                                       f'({err.strerror or err})') from None
            else:
                builder.committed = True
                return True
            if valid(builder.path):
                shutil.rmtree(builder.tmp, ignore_errors=True)
                return False
            _discard_outdated(builder.path, valid)


def _discard_outdated(path, valid):
    """Move the out-of-date database ``path`` aside and delete it. One that ``valid`` accepts
    once aside was another writer's, renamed in since it was looked at: it is moved back."""
    aside = _aside(path)
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # another writer moved it first
        return
    keep = valid(aside)
    close_lmdb(aside)
    if keep:
        try:
            os.rename(aside, path)
            return
        except OSError:  # yet another writer's is in place: that one stays
            pass
    shutil.rmtree(aside, ignore_errors=True)


def sweep_leftovers(path):
    """Clear what dead runs left beside the database ``path``: their temporaries
    (``.tmp-mtu<pid>-<n>``, removed) and the old databases they had moved aside (``.old-mtu<pid>``:
    removed when ``path`` exists, else moved back: the run died between its two renames)."""
    remove_stale_temporaries(path)
    for old in glob.glob(f'{glob.escape(path)}.old-mtu*'):
        pid = old[len(path) + len('.old-mtu'):]
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(pid):
            continue
        if osp.exists(path):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)


def flow_value(sharp, prev):
    """(value bytes, shape) of the flow of sharp frame t to t-1 (zeros when ``prev`` is None)."""
    flow = np.zeros(sharp.shape[:2] + (2,), np.float32) if prev is None \
        else sharp_flow(sharp, prev)
    return flow.astype(np.float16).tobytes(), flow.shape


def _check_frame_shape(store, seq, i, frame, first):
    if frame.shape != first.shape:
        raise DatasetError(f'{store.where(seq, i)} is {frame.shape[:2]} but frame 0 of the '
                           f'sequence ({store.where(seq, 0)}) is {first.shape[:2]}; the frames '
                           'of a sequence must have one size')


def _inside(path, folder):
    """Whether ``path`` is ``folder`` or lies inside it (links resolved)."""
    path, folder = osp.realpath(path), osp.realpath(folder)
    return osp.commonpath([path, folder]) == folder


def prepare_output(out, splits, src=None):
    """Check, before any work, that the LMDBs of ``splits`` can be written under ``out`` (and
    not into the dataset tree ``src``), and make the folders; one-line errors naming the path
    at fault. What dead runs left there is cleared. Returns the folders it made (removed again
    if the conversion fails)."""
    if src is not None and any(_inside(osp.join(out, split), src) for split in splits):
        raise ValueError(f'{out}: the output would be written inside the dataset tree {src}, '
                         'where it would be read as part of the dataset; choose a folder '
                         'outside it')
    if osp.exists(out) and not osp.isdir(out):
        raise ValueError(f'{out}: the output root is a file, not a folder')
    for split in splits:
        folder = osp.join(out, split)
        if osp.exists(folder) and not osp.isdir(folder):
            raise ValueError(f'{folder}: a file stands where the split\'s folder goes')
        for name in DATABASES:
            path = osp.join(folder, f'{name}.lmdb')
            if osp.exists(path) and not osp.isdir(path):
                raise ValueError(f'{path}: a file stands where the database goes')
            sweep_leftovers(path)
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
    try:
        for seq, n in seqs.items():
            prev = first = None
            for i in range(n):
                b = decode_rgb(blur.get(seq, i), blur.where(seq, i))
                s = decode_rgb(sharp.get(seq, i), sharp.where(seq, i))
                if b.shape != s.shape:
                    raise DatasetError(f'{sharp.where(seq, i)} is {s.shape[:2]} but its blurry '
                                       f'frame {blur.where(seq, i)} is {b.shape[:2]}')
                first = b if first is None else first
                _check_frame_shape(blur, seq, i, b, first)
                mine['blur'].put(seq, i, encode_png(b), b.shape)
                mine['sharp'].put(seq, i, encode_png(s), s.shape)
                if with_flow:
                    mine['flow'].put(seq, i, *flow_value(s, prev))
                prev = s
                bar.update()
    finally:
        bar.close()  # (an error's line then starts on a line of its own)


#: the file of a flow cache naming the frames it was computed from (:func:`flow_cache_stamp`)
FLOW_SOURCE = 'source.txt'
#: raised when the flow computed from the same files changes (their decoding, the flow method),
#: so that older caches are computed again: 2 = frames upright by their EXIF orientation
FLOW_CACHE_VERSION = 2


def flow_cache_stamp(sharp):
    """The text a flow cache of the folder store ``sharp`` keeps in :data:`FLOW_SOURCE`."""
    return f'mtu_toolkit flow cache {FLOW_CACHE_VERSION}\nframes {sharp.stamp()}\n'


def flow_cache_outdated(path, seqs, stamp):
    """Why ``path`` is not a whole flow cache of the sequences ``seqs`` ({name: frames})
    computed from the frames ``stamp`` (:func:`flow_cache_stamp`) names, as they are now: a
    few words, '' when there is none, None when it is that cache."""
    if not osp.isdir(path):
        return ''
    try:
        with open(osp.join(path, FLOW_SOURCE)) as f:
            kept = f.read()
    except OSError:
        kept = None
    if kept is None or kept.split('\n')[0] != stamp.split('\n')[0]:
        return 'the cache there was made by an older version of the toolkit'
    if not lmdb_holds(path, seqs) or kept != stamp:
        return 'the frames changed since the cache there was computed'
    return None


def flow_cache_holds(path, seqs, stamp):
    """Whether ``path`` is a whole flow cache of ``seqs`` as the frames are now (see
    :func:`flow_cache_outdated`)."""
    return flow_cache_outdated(path, seqs, stamp) is None


def build_flow_lmdb(sharp, seqs, path, stamp, why=''):
    """Compute the flow of every frame of ``sharp`` (a frame store) into the LMDB ``path``, a
    cache that other processes may build at once: the first whole one stays
    (:func:`commit_first`). ``stamp`` (:func:`flow_cache_stamp`) is kept with it; ``why`` (from
    :func:`flow_cache_outdated`) is said when there was a cache."""
    builder = LmdbBuilder(path, extra_files={FLOW_SOURCE: stamp})
    try:
        print(f'computing the optical flow of {sum(seqs.values())} sharp frames'
              f'{f" ({why})" if why else " once"}, cached in {path}')
        bar = ProgressLine(sum(seqs.values()), unit='frames')
        for seq, n in seqs.items():
            prev = None
            for i in range(n):
                s = decode_rgb(sharp.get(seq, i), sharp.where(seq, i))
                builder.put(seq, i, *flow_value(s, prev))
                prev = s
                bar.update()
        bar.close()
        commit_first(builder, lambda where: flow_cache_holds(where, seqs, stamp))
    except BaseException:
        builder.abort()
        raise


def convert_dataset(src, out, layout='auto', splits=None, with_flow=False):
    """Convert every split (or ``splits``) of a dataset tree; returns {split: {seq: frames}}.

    All or nothing: every split's pairs are checked before any database is written, the
    output is checked writable (and outside ``src``) before any work, the databases are
    written under temporary names and swapped in together only when all of them are complete
    (:func:`commit_all`; a failure removes them, and the folders this run made, and leaves
    the old databases as they were). Without ``with_flow`` an older ``flow.lmdb`` of a split
    is removed in the same swap, as it would not match the new frames.
    """
    layout = detect_layout(src) if layout == 'auto' else layout
    if not splits:
        splits = list_splits(src, layout)
        for split in build_layout(layout).unpaired_splits(src):
            print(f'{split}: skipped (no sharp frames)')
        if not splits:  # e.g. --layout reds given a DVD tree
            raise DatasetError(f'{src}: no split of the {layout} layout with blurry and sharp '
                               f'frames (is it a {layout} tree? --layout auto detects it)')
    plan = {}
    for split in splits:
        blur = FolderStore(src, layout, split, 'blur')
        sharp = FolderStore(src, layout, split, 'sharp')
        plan[split] = (blur, sharp, check_pairs(blur, sharp, src, split))
    made = prepare_output(out, splits, src)
    builders = []
    stale = [] if with_flow else [osp.join(out, split, 'flow.lmdb') for split in splits]
    try:
        for split, stores in plan.items():
            write_split(stores, out, split, with_flow, builders)
        commit_all(builders, remove=stale)
    except BaseException:
        for builder in builders:
            builder.abort()
        remove_empty(made)
        raise
    return {split: stores[2] for split, stores in plan.items()}
