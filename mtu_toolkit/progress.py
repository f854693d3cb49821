"""The one terminal progress line of the toolkit (conversion, training, deblurring).

    bar = ProgressLine(total=240, unit='frames')
    for ...:
        bar.update()    # [#######------------------] 56/240 frames  3.1 frames/s  ETA 59s
    bar.close()

Redrawn in place (``\\r``) at most 4 times a second, on stderr by default so that logs on
stdout stay clean; disabled lines draw nothing but still count (rate, elapsed).
"""
import sys
import time


def format_eta(seconds):
    """'1h02m', '3m05s' or '42s'."""
    seconds = int(max(seconds, 0))
    if seconds >= 3600:
        return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
    if seconds >= 60:
        return f'{seconds // 60}m{seconds % 60:02d}s'
    return f'{seconds}s'


class ProgressLine:
    """A one-line progress bar with the processing rate and the remaining time.

    Args:
        total (int): the count at the end (0: unknown, no bar and no ETA).
        unit (str): what is counted ('frames', 'it').
        width (int): characters of the bar. Default 30.
        stream: where to draw (default stderr).
        enabled (bool): draw at all.
        start_count (int): the count already done when the line starts (a resumed run).
    """

    def __init__(self, total=0, unit='it', width=30, stream=None, enabled=True, start_count=0):
        self.total, self.unit, self.width = total, unit, width
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.count = self._start_count = start_count
        self.start, self._last = time.perf_counter(), 0.
        self.extra = ''

    @property
    def rate(self):
        """Items per second since the line started."""
        return (self.count - self._start_count) / max(time.perf_counter() - self.start, 1e-9)

    fps = rate

    def update(self, n=1, extra=None, force=False):
        """Count ``n`` more; ``extra`` (e.g. 'loss 0.041') is shown after the rate."""
        self.count += n
        if extra is not None:
            self.extra = extra
        now = time.perf_counter()
        if self.enabled and (force or now - self._last > 0.25 or self.count == self.total):
            self._last = now
            self._draw()

    def text(self):
        rate = self.rate
        parts = []
        if self.total:
            done = min(self.count / self.total, 1.)
            filled = int(self.width * done)
            parts.append(f'[{"#" * filled}{"-" * (self.width - filled)}] '
                         f'{self.count}/{self.total} {self.unit}')
        else:
            parts.append(f'{self.count} {self.unit}')
        parts.append(f'{rate:.2f} {self.unit}/s')
        if self.extra:
            parts.append(self.extra)
        if self.total and rate > 0 and self.count < self.total:
            parts.append(f'ETA {format_eta((self.total - self.count) / rate)}')
        return '  '.join(parts)

    def _draw(self, end=''):
        self.stream.write(f'\r{self.text()}{end}')
        self.stream.flush()

    def close(self):
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(end='\n')
