"""Files written through temporary names: the leftovers of dead runs, found and removed.

Every writer of the toolkit (LMDB conversion, deblurred videos and frame folders) writes to
``<name>.tmp-<pid>...`` and renames when complete. A run killed hard (SIGKILL, power loss)
leaves its temporary behind; the next run removes those whose process is gone.
"""
import glob
import os
import re
import shutil

_PID = re.compile(r'\.tmp-(\d+)')


def pid_alive(pid):
    """Whether process ``pid`` is running (then its temporary files are still being written)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(pattern):
    """Remove the files and folders matching the glob ``pattern`` whose ``.tmp-<pid>`` names a
    process that is no longer running (never this process's). Returns the paths removed."""
    removed = []
    for path in glob.glob(pattern):
        found = _PID.search(os.path.basename(path))
        if not found or int(found.group(1)) == os.getpid() or pid_alive(found.group(1)):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        removed.append(path)
    return removed
