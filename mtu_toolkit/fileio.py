"""Files the tools write: checked before any work (:func:`check_output_file`), written
through temporary names, and the leftovers of dead runs found and removed.

Every writer of the toolkit (LMDB conversion, deblurred videos and frame folders) writes to
``<name>.tmp-mtu<pid>-<n>[suffix]`` (:func:`temporary_path`; a video ``.<name>.tmp-mtu...``,
hidden, with its extension last) and renames when complete. A run killed hard (SIGKILL, power
loss) leaves its temporary behind; the next run removes those whose process is gone
(:func:`remove_stale_temporaries`), and nothing else.
"""
import glob
import itertools
import os
import os.path as osp
import re
import shutil
import signal
import threading
from contextlib import contextmanager

_TEMPORARIES = itertools.count()


def check_output_file(path, inputs=(), overwrite=False):
    """Refuse, before any work, a file a tool would write that would lose a file or could not
    be written.

    Args:
        path (str): the file to write.
        inputs (list[str]): files the tool reads, which it may never replace (also through
            links).
        overwrite (bool): let an existing ``path`` be replaced.

    Raises:
        ValueError: one line naming ``path``: an input, a folder, an existing file (without
            ``overwrite``), or in a folder that does not exist or is not writable.
    """
    for src in inputs:
        if src and (osp.exists(src) and osp.exists(path) and osp.samefile(src, path)
                    or osp.realpath(src) == osp.realpath(path)):
            raise ValueError(f'{path}: is the input {src}; write the result elsewhere')
    if osp.isdir(path):
        raise ValueError(f'{path}: is a folder; give the name of the file to write')
    if osp.exists(path) and not overwrite:
        raise ValueError(f'{path}: exists; pass --overwrite to replace it')
    folder = osp.dirname(osp.abspath(path))
    if not osp.isdir(folder):
        raise ValueError(f'{path}: the folder {folder} does not exist')
    check_writable_folder(path, folder)


def check_writable_folder(path, folder):
    """A ValueError naming ``path`` when ``folder`` (where it is written) is read-only."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f'{path}: the folder {folder} is not writable (permissions or a '
                         'read-only file system)')


def opencv_path(path, error=ValueError):
    """``path`` as OpenCV must be given it: a str whose UTF-8 bytes are the file's name.
    Under a non-UTF-8 locale Python decodes a name's other bytes to surrogates, on which
    OpenCV crashes (a segmentation fault, no message); a name that is not UTF-8 at all is
    ``error`` in one line."""
    try:
        return os.fsencode(path).decode('utf-8')
    except UnicodeDecodeError:
        raise error(f'{path}: OpenCV takes UTF-8 file names only; rename it') from None


def write_atomically(path, data, suffix=''):
    """Write the bytes ``data`` to ``path`` through ``<path>.tmp-mtu<pid>-<n><suffix>``, flushed to
    disk and renamed: ``path`` is whole or untouched, and no temporary is left on failure.

    Serialise into memory first (``torch.save`` / ``torch.jit.save`` / ``torch.onnx.export``
    into an ``io.BytesIO``) and write the bytes here: torch's own file writers report a full
    disk as a RuntimeError, and TorchScript's aborts the process from C++, which no caller can
    catch; Python's write raises an ``OSError`` (ENOSPC) naming the problem.

    Raises:
        OSError: the file cannot be written (full disk, permissions, ...); its ``filename``
            is ``path`` when the system named none (a failed write does not).
    """
    tmp = temporary_path(path, suffix)
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if osp.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and err.filename is None:
            raise OSError(err.errno, err.strerror, path) from None
        raise


def pid_alive(pid):
    """Whether process ``pid`` is running (then its temporary files are still being written)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def temporary_path(path, suffix=''):
    """``<path>.tmp-mtu<pid>-<n><suffix>``: a name no other writer uses, this process's own
    included (``n`` counts the temporaries it named), and no user's file or folder has (the
    ``mtu``: a folder of one's own named ``shots.tmp-2024-11`` is not taken for one)."""
    return f'{path}.tmp-mtu{os.getpid()}-{next(_TEMPORARIES)}{suffix}'


def remove_stale_temporaries(path, suffix=''):
    """Remove the temporaries of ``path`` with ``suffix`` (files or folders named as
    :func:`temporary_path` names them, ``<path>.tmp-mtu<pid>-<n><suffix>``, nothing else) whose
    process is no longer running (never this process's). Returns the paths removed."""
    name = re.compile(re.escape(osp.basename(path)) + r'\.tmp-mtu(\d+)-\d+'
                      + re.escape(suffix))
    removed = []
    for found in glob.glob(f'{glob.escape(path)}.tmp-mtu*{glob.escape(suffix)}'):
        match = name.fullmatch(osp.basename(found))
        if not match or int(match.group(1)) == os.getpid() or pid_alive(match.group(1)):
            continue
        if osp.isdir(found) and not osp.islink(found):
            shutil.rmtree(found, ignore_errors=True)
        else:
            try:
                os.remove(found)
            except FileNotFoundError:
                pass
        removed.append(found)
    return removed


@contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM until the block ends, then act on the first that arrived (its
    handler raises ``KeyboardInterrupt`` / ``Terminated``, or the default ends the process):
    what the block does (the renames of a commit, a temporary made and its owner named, a
    thread started and named) is not cut off half-way.

    The Python handlers are swapped for one that notes the signal, rather than blocking the
    signal in this thread: the kernel hands a process's signal to any thread that does not
    block it (a torch or decoder thread), and Python would still run the handler in the main
    thread at once. Only the main thread has handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = [sig for sig in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(sig) is not None]  # None: set outside Python, left alone
    arrived, old = [], {}
    try:  # (each handler noted before it is swapped: a signal in between restores it)
        for sig in held:
            old[sig] = signal.getsignal(sig)
            signal.signal(sig, lambda signum, frame: arrived.append(signum))
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if arrived:
            signal.raise_signal(arrived[0])  # this thread: the restored handler runs now


def folder_target(path):
    """Where an output folder is made: the folder a link points to (the finished folder
    replaces that one, and the link keeps pointing at it), else ``path`` itself (absolute,
    without a trailing separator)."""
    path = osp.abspath(path)
    return osp.realpath(path) if osp.islink(path) else path


def swap_in_folder(tmp, target):
    """Rename the finished folder ``tmp`` to ``target``, replacing a folder there whole, with
    SIGINT and SIGTERM held: ``target`` is the old folder or the new one, never none. The old
    one is renamed aside under a temporary's name, which the caller deletes (and which
    :func:`remove_stale_temporaries` removes if that deletion is interrupted).

    Returns:
        str | None: the old folder's name aside, None when there was none.
    """
    aside = temporary_path(target) if osp.isdir(target) else None
    with signals_held():
        if aside:
            os.replace(target, aside)
        try:
            os.replace(tmp, target)
        except BaseException:
            if aside:
                os.replace(aside, target)
            raise
    return aside

