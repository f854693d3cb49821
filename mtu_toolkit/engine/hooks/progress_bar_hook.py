"""A terminal progress bar over training iterations (for interactive runs and the demo)."""
import sys
import time

from mmengine.hooks import Hook

from ...registry import HOOKS


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """One updating line: ``[#####     ] 120/400 it  1.9 it/s  loss 0.0412  ETA 2m27s``.

    Args:
        width (int): characters of the bar. Default 30.
        stream: where to write (default stderr, so logs on stdout stay clean).
    """

    priority = 'VERY_LOW'

    def __init__(self, width=30, stream=None):
        self.width = width
        self.stream = stream or sys.stderr
        self._start = None
        self._start_iter = 0

    def before_train(self, runner):
        self._start, self._start_iter = time.perf_counter(), runner.iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        done, total = runner.iter + 1, runner.max_iters
        rate = (done - self._start_iter) / max(time.perf_counter() - self._start, 1e-9)
        eta = int((total - done) / rate) if rate > 0 else 0
        filled = int(self.width * done / total)
        loss = float(outputs['loss']) if outputs and 'loss' in outputs else float('nan')
        self.stream.write(f'\r[{"#" * filled}{" " * (self.width - filled)}] {done}/{total} it '
                          f'{rate:5.2f} it/s  loss {loss:.4f}  ETA {eta // 60}m{eta % 60:02d}s')
        if done == total:
            self.stream.write('\n')
        self.stream.flush()
