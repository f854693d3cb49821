"""What a tool does first, before its heavy imports (torch, mmengine): Ctrl-C while they load
ends it with one line and exit code 130, not the traceback of whichever import it stopped.

Standard library only, so that it is in place before anything slow is imported.
"""
import os
import signal
import sys
from contextlib import contextmanager


def _stop_importing(signum, frame):
    print('\ninterrupted while starting; nothing done', file=sys.stderr, flush=True)
    # os._exit, not SystemExit: an import that catches every exception cannot swallow it, and
    # nothing has been written yet that would need cleaning up
    os._exit(130)


@contextmanager
def importing(name):
    """Around a tool's imports: when ``name`` (the tool's ``__name__``) is ``'__main__'``,
    Ctrl-C in the block exits 130 with one line. The previous SIGINT handler is back after the
    block, so the tool's own Ctrl-C handling is unchanged; a module imported by a test
    (another ``__name__``) is left alone."""
    if name != '__main__':
        yield
        return
    previous = signal.signal(signal.SIGINT, _stop_importing)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
