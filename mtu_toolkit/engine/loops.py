"""Training loop whose resume continues exactly where the interrupted run stopped."""
import logging

from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from ..registry import LOOPS


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """:class:`IterBasedTrainLoop` that calls the hook stage ``after_resume_data_skip``.

    On resume mmengine replays the data loader up to the resumed iteration (so the sampler and
    the workers' random streams are where they were), which also consumes the main process'
    random generators. Right after that replay this loop calls ``after_resume_data_skip`` on the
    hooks; :class:`~mtu_toolkit.engine.hooks.AtomicCheckpointHook` restores there the generator
    states saved in the checkpoint, so the next batch and step draw the same random numbers as
    the uninterrupted run. Arguments as :class:`IterBasedTrainLoop`.
    """

    def run(self):
        self.runner.call_hook('before_train')
        # an iteration-based run is one big epoch for the hooks
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            print_log(f'Replaying the data loader for {self._iter} iterations to resume',
                      logger='current', level=logging.INFO)
            for _ in range(self._iter):
                next(self.dataloader_iterator)
            self.runner.call_hook('after_resume_data_skip')
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(next(self.dataloader_iterator))
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model
