"""One backend for frames kept in a folder tree or in an LMDB (BasicSR-style, with meta_info).

An LMDB made by ``tools/dataset_converters/convert_to_lmdb.py`` holds one split and side; keys
are ``<seq>/<frame:08d>`` (frame = index in the sequence), values PNG bytes (or raw float16
flow), and ``meta_info.txt`` beside ``data.mdb`` has a line ``<seq> <num_frames> (<h>,<w>,<c>)``
per sequence.
"""
import hashlib
import os
import os.path as osp

import lmdb
import numpy as np
from mmengine.fileio import LocalBackend

from .errors import DatasetError
from .frame_io import frame_stem
from .layouts import build_layout, list_frames


#: read-only environments of this process, by (pid, real path): LMDB allows one environment per
#: database per process (two datasets on one LMDB, e.g. val and test, share it), and one must
#: not cross a fork (each dataloader worker opens its own)
_ENVS = {}


def open_lmdb(path):
    """The shared read-only environment of the LMDB ``path`` in this process.

    A database whose ``data.mdb`` is shorter than the pages its meta page says it holds (a
    truncated copy or download) is refused here, naming the file: reading it through the
    memory map would kill the process with SIGBUS.
    """
    key = (os.getpid(), osp.realpath(path))
    if key not in _ENVS:
        for inherited in [k for k in _ENVS if k[0] != key[0]]:
            # a forked worker: drop the parent's handles (py-lmdb refuses to open files that
            # an inherited handle still holds; closing it here leaves the parent's untouched)
            _ENVS.pop(inherited).close()
        data = osp.join(path, 'data.mdb')
        try:
            env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
        except lmdb.Error as err:
            raise DatasetError(f'{data}: not a readable LMDB ({err}); convert the dataset again')
        needed = (env.info()['last_pgno'] + 1) * env.stat()['psize']
        size = osp.getsize(data)
        if size < needed:
            env.close()
            raise DatasetError(f'{data}: truncated ({size} bytes, the database needs {needed}); '
                               'copy or convert it again')
        _ENVS[key] = env
    return _ENVS[key]


def close_lmdb(path):
    """Close this process's environment of ``path`` (before the database is replaced)."""
    env = _ENVS.pop((os.getpid(), osp.realpath(path)), None)
    if env is not None:
        env.close()


def lmdb_holds(path, seqs):
    """Whether ``path`` is a whole LMDB of exactly the sequences and frame counts ``seqs``
    ({name: frames}); False when there is none or it cannot be read."""
    try:
        return LmdbStore(path).sequences() == seqs
    except (FileNotFoundError, ValueError):
        return False


def frame_key(seq, index):
    return f'{seq}/{index:08d}'


def _parse_shape(text):
    return tuple(int(v) for v in text.strip('()').split(','))


def read_meta_info(lmdb_path):
    """{seq: (num_frames, (h, w, c))} from ``<lmdb_path>/meta_info.txt``.

    Two formats: the toolkit's, one line a sequence ``<seq> <num_frames> (<h>,<w>,<c>)``, and
    BasicSR's (``make_lmdb_from_imgs``), one line a frame ``<seq>/<frame:08d>.png (<h>,<w>,<c>)
    <compression>`` (its video LMDBs, e.g. REDS'), whose keys are the same ``<seq>/<frame:08d>``.
    """
    path = osp.join(lmdb_path, 'meta_info.txt')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{lmdb_path}: no meta_info.txt (not an mtu_toolkit LMDB, or '
                                'an unfinished conversion)')
    meta, frames = {}, {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                # from the right: a sequence's name may hold spaces
                first, second, third = line.strip().rsplit(None, 2)
                if '/' in first and second.startswith('('):  # BasicSR: a frame a line
                    seq, name = first.rsplit('/', 1)
                    frames.setdefault(seq, []).append((int(osp.splitext(name)[0]),
                                                       _parse_shape(second)))
                else:
                    meta[first] = (int(second), _parse_shape(third))
            except ValueError:
                raise DatasetError(f'{path}:{n}: expected "<seq> <num_frames> (<h>,<w>,<c>)" or '
                                   f'BasicSR\'s "<seq>/<frame>.png (<h>,<w>,<c>) <level>", got '
                                   f'{line.strip()!r}') from None
    for seq, items in frames.items():
        indices = sorted(i for i, _ in items)
        if indices != list(range(len(indices))):
            raise DatasetError(f'{path}: the frames of {seq} are not numbered '
                               f'0..{len(indices) - 1}')
        meta[seq] = (len(indices), items[0][1])
    return meta


class FolderStore:
    """Frames of one side ('blur' | 'sharp') of a split of a dataset folder tree.

    Frame ``i`` of a sequence is its ``i``-th image file in natural name order (0, 1, ..., 10,
    not 0, 1, 10, 2); :func:`check_pairs` pairs the two sides by file name.
    """

    def __init__(self, root, layout, split, side):
        layout = build_layout(layout)
        self.root, self.layout, self.split, self.side = root, layout, split, side
        self._backend = LocalBackend()
        self._files = {}
        for seq in layout.side_sequences(root, split, side):
            folder = layout.side_dir(root, split, seq, side)
            self._files[seq] = [osp.join(folder, n) for n in list_frames(folder)]

    def sequences(self):
        return {seq: len(files) for seq, files in self._files.items()}

    def files(self, seq):
        """The frame files of ``seq``, in frame order."""
        return self._files[seq]

    def reorder(self, seq, files):
        """Use ``files`` (the same files, in another order) as the frames of ``seq``."""
        self._files[seq] = list(files)

    def where(self, seq, index):
        return self._files[seq][index]

    def get(self, seq, index):
        """Encoded bytes of frame ``index`` of ``seq``."""
        return self._backend.get(self._files[seq][index])

    def stamp(self):
        """What the frames on disk are, as a hex digest of every frame file's path (from the
        root), size and modification time, in frame order: what is computed from the frames
        and kept (the flow cache) is out of date when it changes. Cheap (a ``stat`` a frame,
        no frame read); a copy that does not keep modification times changes it."""
        digest = hashlib.sha256()
        for seq in sorted(self._files):
            for file in self._files[seq]:
                st = os.stat(file)
                digest.update(f'{osp.relpath(file, self.root)}\t{st.st_size}\t'
                              f'{st.st_mtime_ns}\n'.encode())
        return digest.hexdigest()


class LmdbStore:
    """Frames of one LMDB (checked once against its meta_info.txt).

    mmengine's ``LmdbBackend`` is not used: it opens an environment per backend object, which
    LMDB refuses for a second object on the same database in one process; the environments
    are shared per process instead (:func:`open_lmdb`).
    """

    def __init__(self, path):
        if not osp.isdir(path) or not osp.isfile(osp.join(path, 'data.mdb')):
            raise FileNotFoundError(f'LMDB {path} does not exist (no data.mdb)')
        self.path = path
        self.meta = read_meta_info(path)
        self._check_keys()

    def _check_keys(self):
        """meta_info and the keys must agree: same total, first and last frame of each seq."""
        with open_lmdb(self.path).begin(write=False) as txn:
            entries = txn.stat()['entries']
            for seq, (count, _) in self.meta.items():
                for i in (0, count - 1):
                    if txn.get(frame_key(seq, i).encode()) is None:
                        raise DatasetError(f'{self.path}: meta_info.txt lists {seq} with '
                                           f'{count} frames but key {frame_key(seq, i)} is '
                                           'missing')
        total = sum(c for c, _ in self.meta.values())
        if entries != total:
            raise DatasetError(f'{self.path}: meta_info.txt lists {total} frames but the LMDB '
                               f'holds {entries} keys')

    def sequences(self):
        return {seq: count for seq, (count, _) in self.meta.items()}

    def where(self, seq, index):
        return f'{self.path}:{frame_key(seq, index)}'

    def get(self, seq, index):
        """Stored bytes of frame ``index`` of ``seq``."""
        with open_lmdb(self.path).begin(write=False) as txn:
            buf = txn.get(frame_key(seq, index).encode())
        if buf is None:
            raise KeyError(f'{self.path}: no key {frame_key(seq, index)}')
        return buf

    def get_flow(self, seq, index):
        """(H, W, 2) float32 flow stored as raw float16 of the shape in meta_info."""
        h, w, c = self.meta[seq][1]
        buf = self.get(seq, index)
        if len(buf) != h * w * c * 2:
            raise DatasetError(f'{self.where(seq, index)}: {len(buf)} bytes, expected float16 '
                               f'({h},{w},{c}) as meta_info.txt says')
        return np.frombuffer(buf, np.float16).reshape(h, w, c).astype(np.float32)


def _short(path):
    """'GT/00003.png' of '/data/DVD/test/v1/GT/00003.png'."""
    return osp.join(osp.basename(osp.dirname(path)), osp.basename(path))


def pair_by_name(blur, sharp, seq):
    """Pair the frame files of ``seq`` by name (the file name without its extension): the sharp
    side is put in the blurry side's order. A clear error names the frames without a partner.
    """
    blur_files, sharp_files = blur.files(seq), sharp.files(seq)
    by_stem = {frame_stem(osp.basename(f)): f for f in sharp_files}
    stems = [frame_stem(osp.basename(f)) for f in blur_files]
    lonely = [f'{_short(f)} has no partner in {osp.basename(osp.dirname(sharp_files[0]))}/'
              for f, stem in zip(blur_files, stems) if stem not in by_stem]
    known = set(stems)
    lonely += [f'{_short(f)} has no partner in {osp.basename(osp.dirname(blur_files[0]))}/'
               for stem, f in by_stem.items() if stem not in known]
    if lonely:
        more = f' (+{len(lonely) - 4} more)' if len(lonely) > 4 else ''
        raise DatasetError(f'sequence {seq} ({osp.dirname(osp.dirname(blur_files[0]))}): '
                           f'{len(blur_files)} blurry frames, {len(sharp_files)} sharp frames; '
                           + '; '.join(lonely[:4]) + more)
    sharp.reorder(seq, [by_stem[stem] for stem in stems])


def check_pairs(blur, sharp, root, split):
    """{seq: frames} of a split whose blur and sharp sides agree (frame folders: paired by
    name); a clear error otherwise."""
    b, s = blur.sequences(), sharp.sequences()
    if set(b) != set(s):
        raise DatasetError(f'{root} ({split}): sequences differ between blur and sharp: only '
                           f'blur {sorted(set(b) - set(s))}, only sharp {sorted(set(s) - set(b))}')
    if isinstance(blur, FolderStore) and isinstance(sharp, FolderStore):
        for seq in b:
            pair_by_name(blur, sharp, seq)
    for seq in b:
        if b[seq] != s[seq]:
            raise DatasetError(f'{root} ({split}): sequence {seq} has {b[seq]} blurry frames '
                               f'({blur.where(seq, 0)}...) but {s[seq]} sharp frames '
                               f'({sharp.where(seq, 0)}...)')
    return b
