"""The Runner of tools/train.py: mmengine's, minus what a run that never trained created."""
import os
import os.path as osp
import shutil

from mmengine.dist import is_main_process
from mmengine.runner import Runner


class TrainingRunner(Runner):
    """mmengine's :class:`~mmengine.runner.Runner` that removes what it created when building
    or training fails, or is interrupted, before the first training iteration: the log folder
    (``work_dir/<timestamp>``), the copy of the config it wrote, and the work dir itself when
    this run made it and nothing else is in it.

    Only what this run created goes, and only from the main process: the work dir is listed
    before the Runner starts, so a ``<timestamp>`` folder already there (another run started in
    the same second) is kept, as is everything else in the work dir (a config copy of an
    earlier run of the same config stays, as rewritten). Once the first iteration has begun
    everything stays: the log is the record of what happened.
    """

    def __init__(self, model, work_dir, **kwargs):
        # listed before mmengine picks the timestamp: every rank lists before the timestamp is
        # broadcast, so this run's folder cannot be among these names
        self._made_work_dir = not osp.isdir(work_dir)
        self._entries_before = set() if self._made_work_dir else set(os.listdir(work_dir))
        self._training_began = False
        try:
            super().__init__(model, work_dir, **kwargs)
        except BaseException:
            self._remove_what_it_made()
            raise

    def train(self):
        try:
            return super().train()
        except BaseException:
            if not self._training_began:
                self._remove_what_it_made()
            raise

    def call_hook(self, fn_name, **kwargs):
        if fn_name == 'before_train_iter':
            self._training_began = True
        super().call_hook(fn_name, **kwargs)

    def _remove_what_it_made(self):
        """Remove what this run created in the work dir (main process only; see the class)."""
        work_dir = getattr(self, '_work_dir', None)  # unset when the Runner failed before it
        if work_dir is None or not is_main_process():
            return
        stamp = getattr(self, '_timestamp', None)
        if stamp is not None and stamp not in self._entries_before:
            shutil.rmtree(osp.join(work_dir, stamp), ignore_errors=True)
        cfg = getattr(self, 'cfg', None)
        copy = osp.basename(cfg.filename) if cfg is not None and cfg.filename else None
        if copy and copy not in self._entries_before and osp.isfile(osp.join(work_dir, copy)):
            os.remove(osp.join(work_dir, copy))
        if self._made_work_dir and osp.isdir(work_dir) and not os.listdir(work_dir):
            os.rmdir(work_dir)
