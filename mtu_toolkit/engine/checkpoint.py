"""Checkpoint safety: weights-only loading of mmengine checkpoints and atomic writes.

mmengine 0.10.7 checkpoints hold a few non-tensor objects: the message hub's
:class:`~mmengine.logging.HistoryBuffer` (numpy arrays inside, and its statistics methods pickled
as ``getattr(HistoryBuffer, 'mean')``) and numpy scalars in the meta. ``torch.load`` with
``weights_only=True`` (the default since torch 2.6) refuses them, so mmengine's resume fails.
:func:`setup_safe_loading` allow-lists exactly those types, and registers a local-file loader
that always passes ``weights_only=True``: a checkpoint never executes code, and anything outside
the list is refused. ``getattr`` is never allow-listed as such; the name maps to
:func:`history_buffer_method`, which can fetch nothing but HistoryBuffer's statistics methods.
"""
import os
import os.path as osp

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


def history_buffer_method(obj, name):
    """The only ``getattr`` a checkpoint may call: a statistics method of HistoryBuffer."""
    if obj is not HistoryBuffer or name.startswith('_') or name not in vars(HistoryBuffer):
        raise RuntimeError(f'checkpoint refused: it calls getattr({obj!r}, {name!r}); only '
                           'HistoryBuffer statistics methods may be looked up')
    return getattr(HistoryBuffer, name)


def _numpy_globals():
    core = np._core if hasattr(np, '_core') else np.core  # numpy 2 renamed numpy.core
    found = [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    # numpy >= 1.25 may pickle dtypes by their class (numpy.dtypes.Float64DType, ...)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')
                  and isinstance(getattr(dtypes, n), type)]
    # pickles name the module numpy had when they were written: allow both spellings
    named = []
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        named += [(core.multiarray._reconstruct, f'{mod}._reconstruct'),
                  (core.multiarray.scalar, f'{mod}.scalar')]
    return found + named


def safe_globals():
    """Everything beyond tensors that a checkpoint of this toolkit may contain."""
    return [HistoryBuffer, (history_buffer_method, 'builtins.getattr')] + _numpy_globals()


def load_from_local_weights_only(filename, map_location=None):
    """``torch.load(filename, weights_only=True)`` with the allow-list; clear errors."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    # only what is not allow-listed already: the context removes on exit what it added, and
    # must not take away the process-wide list of setup_safe_loading
    present = torch.serialization.get_safe_globals()
    missing = [g for g in safe_globals() if g not in present]
    try:
        with torch.serialization.safe_globals(missing):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise RuntimeError(f'cannot load checkpoint {filename} with weights_only=True '
                           f'(refused or corrupt): {e}') from e


_SET_UP = False


def setup_safe_loading():
    """Allow-list :func:`safe_globals` and route mmengine's local checkpoint loading through
    :func:`load_from_local_weights_only`. Idempotent."""
    global _SET_UP
    if _SET_UP:
        return
    torch.serialization.add_safe_globals(safe_globals())
    # '' is mmengine's scheme for local paths; ours replaces its plain torch.load
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_weights_only, force=True)
    _SET_UP = True


def fsync_replace(tmp_path, path):
    """Flush ``tmp_path`` to disk and rename it to ``path`` (atomic on POSIX)."""
    with open(tmp_path, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(tmp_path, path)


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` through a temporary name: readers see old or new, never half."""
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
        f.write(text)
    fsync_replace(tmp, path)


def _step_of(name):
    """('iter', 12) for 'iter_12.pth'; None for other names."""
    stem, ext = osp.splitext(osp.basename(name))
    prefix, _, num = stem.rpartition('_')
    if ext == '.pth' and prefix in ('iter', 'epoch') and num.isdigit():
        return prefix, int(num)
    return None


def find_resume_checkpoint(work_dir):
    """The checkpoint to resume from in ``work_dir``, or None.

    ``last_checkpoint`` names it, unless a later ``iter_<n>.pth`` / ``epoch_<n>.pth`` exists (a
    crash between writing a checkpoint and updating ``last_checkpoint``; checkpoints are written
    atomically, so any such file is whole) or the named file is gone. Temporary files never match.
    """
    found = {}
    if osp.isdir(work_dir):
        for name in os.listdir(work_dir):
            step = _step_of(name)
            if step is not None and step[1] > found.get(step[0], (-1, None))[0]:
                found[step[0]] = (step[1], osp.join(work_dir, name))
    record = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(record):
        with open(record) as f:
            path = f.read().strip()
        if path and osp.isfile(path):
            step = _step_of(path)
            if step is None or step[0] not in found or found[step[0]][0] <= step[1]:
                return path
            return found[step[0]][1]
    if not found:
        return None
    return max(found.values())[1]
