"""A terminal progress bar over training iterations (for interactive runs and the demo)."""
from mmengine.hooks import Hook

from ...progress import ProgressLine
from ...registry import HOOKS


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """One updating line: ``[#####-----] 120/400 it  1.90 it/s  loss 0.0412  ETA 2m27s``.

    Args:
        width (int): characters of the bar. Default 30.
        stream: where to write (default stderr, so logs on stdout stay clean).
    """

    priority = 'VERY_LOW'

    def __init__(self, width=30, stream=None):
        self.width = width
        self.stream = stream
        self._line = None

    def before_train(self, runner):
        self._line = ProgressLine(runner.max_iters, unit='it', width=self.width,
                                  stream=self.stream, start_count=runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        loss = float(outputs['loss']) if outputs and 'loss' in outputs else float('nan')
        self._line.update(force=True, extra=f'loss {loss:.4f}')
        if runner.iter + 1 == runner.max_iters:
            self._line.close()
