"""Overlapping decode / model / encode: a reader thread and a writer thread around the model.

Both threads talk to the main thread through bounded queues, so at most ``maxsize`` frames wait
on either side and memory stays flat however long the video. OpenCV's decoder and encoder
release the GIL, so they run while the model computes.
"""
import queue
import threading

_DONE = object()


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
                item, err = self._queue.get()
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

    An error of ``write`` is re-raised by the next :meth:`put` or by :meth:`close`.
    """

    def __init__(self, write, maxsize=4):
        self._write = write
        self._queue = queue.Queue(maxsize)
        self._error = None
        self._thread = threading.Thread(target=self._run, daemon=True, name='mtu-writer')
        self._thread.start()

    def _run(self):
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self._write(item)
                except BaseException as err:  # noqa: BLE001 - handed to the producer
                    self._error = err

    def put(self, item):
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self):
        """Wait for the queued items to be written; re-raise a write error."""
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error
