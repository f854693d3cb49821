"""Overlapping decode / model / encode: a reader thread and a writer thread around the model.

Both threads talk to the main thread through bounded queues, so at most ``maxsize`` frames wait
on either side and memory stays flat however long the video. OpenCV's decoder and encoder
release the GIL, so they run while the model computes.

The main thread's queue calls run with Ctrl-C and SIGTERM held (``signals_held``), waiting at
most :data:`POLL` seconds at a time so that a held signal acts soon. A signal's exception raised
inside ``Queue.put`` or ``get`` (Python code under a lock) can land after a waiting thread was
woken but before it was taken off the condition's list of waiters; that stale entry then takes
the next wake-up meant for the thread, which sleeps through the end marker while the clean-up
waits for it forever (now and then a SIGTERM to ``tools/deblur_video.py`` hung that way).
"""
import queue
import threading

from ..fileio import signals_held

_DONE = object()
#: seconds a queue call of the main thread waits before it lets a held signal act
POLL = 0.1


def _held(call, *args):
    """``call(*args)`` with SIGINT and SIGTERM acting only once it has returned or raised."""
    with signals_held():
        return call(*args)


class BackgroundReader:
    """Iterates ``iterable`` in a daemon thread, ``maxsize`` items ahead of the consumer.

    Exceptions raised by the iterable are re-raised in the consumer, at the position they
    occurred. :meth:`close` stops the thread early (e.g. when the consumer failed).
    """

    def __init__(self, iterable, maxsize=4):
        self._queue = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iterable,), daemon=True,
                                        name='mtu-reader')
        self._thread.start()

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, iterable):
        try:
            for item in iterable:
                if not self._put((item, None)):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            self._put((None, err))
            return
        self._put((_DONE, None))

    def __iter__(self):
        try:
            while True:
                try:
                    item, err = _held(self._queue.get, True, POLL)
                except queue.Empty:
                    continue
                if err is not None:
                    raise err
                if item is _DONE:
                    return
                yield item
        finally:
            self.close()

    def close(self):
        self._stop.set()
        self._thread.join()


class BackgroundWriter:
    """Calls ``write(item)`` in a thread for each :meth:`put` item, ``maxsize`` items deep.

    An error of ``write`` is re-raised by the next :meth:`put` or by :meth:`close`;
    :meth:`abort` stops without writing what is still queued.
    """

    def __init__(self, write, maxsize=4):
        self._write = write
        self._queue = queue.Queue(maxsize)
        self._error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name='mtu-writer')
        self._thread.start()

    def _run(self):
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is None and not self._stop.is_set():
                try:
                    self._write(item)
                except BaseException as err:  # noqa: BLE001 - handed to the producer
                    self._error = err

    def put(self, item):
        """Queue ``item`` (wait while ``maxsize`` are queued); re-raise an earlier write error."""
        if self._error is not None:
            raise self._error
        self._put(item)

    def _put(self, item):
        while True:
            if not self._thread.is_alive():
                raise RuntimeError('the writer thread has ended; nothing more is written')
            try:
                return _held(self._queue.put, item, True, POLL)
            except queue.Full:
                continue

    def _end(self):
        """Queue the end marker (unless the thread has ended) and wait for the thread."""
        if self._thread.is_alive():
            self._put(_DONE)
        self._thread.join()

    def close(self):
        """Wait for the queued items to be written; re-raise a write error."""
        self._end()
        if self._error is not None:
            raise self._error

    def abort(self):
        """Stop the thread without writing the items still queued (an error is dropped)."""
        self._stop.set()
        self._end()
