"""The Runner of tools/train.py: mmengine's, minus the log folder of a run that never trained."""
import os
import os.path as osp
import shutil

from mmengine.dist import is_main_process
from mmengine.runner import Runner


class TrainingRunner(Runner):
    """mmengine's :class:`~mmengine.runner.Runner` that removes the log folder it made
    (``work_dir/<timestamp>``) when building or training fails, or is interrupted, before the
    first training iteration.

    Only the folder this run created goes, and only from the main process: the work dir is
    listed before the Runner starts, so a ``<timestamp>`` folder already there (another run
    started in the same second) is kept, as is everything else in the work dir. Once the first
    iteration has begun the folder stays: its log is the record of what happened.
    """

    def __init__(self, model, work_dir, **kwargs):
        # listed before mmengine picks the timestamp: every rank lists before the timestamp is
        # broadcast, so this run's folder cannot be among these names
        self._entries_before = set(os.listdir(work_dir)) if osp.isdir(work_dir) else set()
        self._training_began = False
        try:
            super().__init__(model, work_dir, **kwargs)
        except BaseException:
            self._remove_new_log_dir()
            raise

    def train(self):
        try:
            return super().train()
        except BaseException:
            if not self._training_began:
                self._remove_new_log_dir()
            raise

    def call_hook(self, fn_name, **kwargs):
        if fn_name == 'before_train_iter':
            self._training_began = True
        super().call_hook(fn_name, **kwargs)

    def _remove_new_log_dir(self):
        """Remove ``work_dir/<timestamp>`` when this run created it (main process only)."""
        stamp = getattr(self, '_timestamp', None)  # unset when the Runner failed before it
        if stamp is None or stamp in self._entries_before or not is_main_process():
            return
        shutil.rmtree(osp.join(self._work_dir, stamp), ignore_errors=True)
