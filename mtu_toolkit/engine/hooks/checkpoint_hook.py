"""Checkpoint hook with atomic saves, weights-only loading and random-generator state."""
import difflib
import glob
import inspect
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from ...checked_registry import ComponentArgumentError
from ...registry import HOOKS
from ..checkpoint import atomic_write_text, fsync_replace, setup_safe_loading
from ..rng_state import get_rng_state, set_rng_state


def _check_save_arguments(kwargs):
    """Refuse, when the hook is built, a keyword that ``CheckpointHook`` does not take.

    mmengine's hook keeps unknown keywords and hands them to ``runner.save_checkpoint``, which
    takes none beyond those the hook passes itself: a misspelt ``intervall=1`` trained to the
    first save (hours in) and failed there, with nothing saved.
    """
    named = set(inspect.signature(CheckpointHook.__init__).parameters) - {'self', 'kwargs'}
    extra = sorted(set(kwargs) - named)
    if extra:
        hints = [f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k)
                 for k in extra for close in [difflib.get_close_matches(k, named, 1)]]
        raise ComponentArgumentError(
            f"CheckpointHook (default_hooks.checkpoint) takes no argument {', '.join(hints)}; "
            f"it takes: {', '.join(sorted(named))}")


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """:class:`~mmengine.hooks.CheckpointHook` that never leaves a half-written checkpoint.

    - Each checkpoint is written to ``<name>.tmp``, flushed and renamed; ``last_checkpoint`` is
      replaced the same way, and only then are checkpoints beyond ``max_keep_ckpts`` deleted, so
      a crash at any moment leaves the previous checkpoint usable.
    - Checkpoints carry ``rng_state`` (python / numpy / torch / CUDA generators); on resume they
      are restored after the data loader replay (see ``ResumableIterBasedTrainLoop``).
    - ``save_best``: the new best checkpoint is written the same way, and the previous best is
      deleted only once the new one is in place, and only when it lies in this run's folder
      (a run resumed from another run's checkpoint into a new ``work_dir`` leaves the old
      run's files alone).
    - A checkpoint's temporary is removed when its save fails or is interrupted (Ctrl-C,
      SIGTERM through the tools); one a hard kill left behind is removed when training starts.
    - A run resumed from a checkpoint of its own folder names it in ``last_checkpoint`` when
      training starts: later checkpoints of the run it left are an abandoned branch
      (:func:`~mtu_toolkit.engine.checkpoint.find_resume_checkpoint` skips them).
    - Building the hook turns on weights-only checkpoint loading
      (:func:`~mtu_toolkit.engine.checkpoint.setup_safe_loading`).

    mmengine internals overridden (checked against mmengine 0.10.7, tested in
    tests/test_hooks.py): ``_save_checkpoint_with_step`` (the periodic save, rewritten to save
    through a temporary name) and ``_save_best_checkpoint`` (run with the runner's saving routed
    through a temporary name and the backend's deletions deferred), because mmengine writes
    checkpoints in place and deletes the old best before saving the new.

    Arguments as :class:`~mmengine.hooks.CheckpointHook`. Non-local backends (``backend_args``)
    fall back to mmengine's saving.
    """

    def __init__(self, *args, **kwargs):
        _check_save_arguments(kwargs)
        super().__init__(*args, **kwargs)
        setup_safe_loading()
        self._rng_to_restore = None

    def before_train(self, runner):
        super().before_train(runner)
        if not isinstance(self.file_backend, LocalBackend) or not is_main_process():
            return
        # what a hard kill (SIGKILL, power loss) left half-written: never complete, never named
        # by last_checkpoint (it is replaced only after the rename)
        for path in glob.glob(osp.join(glob.escape(self.out_dir), '*.pth.tmp')):
            os.remove(path)
            runner.logger.info(f'Removed {path}, half-written by an interrupted run')
        # a run resumed from an earlier checkpoint of this folder records it as its start:
        # the later checkpoints of the run it left are an abandoned branch from now on, and
        # `--resume` without a value must not go back to them if this run stops before it saves
        start = getattr(runner, '_load_from', None) if getattr(runner, '_resume', False) \
            else None
        if isinstance(start, str) and osp.isfile(start) \
                and osp.realpath(osp.dirname(osp.abspath(start))) == osp.realpath(self.out_dir):
            # (realpath: out_dir may not exist yet, e.g. a fork into a new folder)
            atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'),
                              osp.join(self.out_dir, osp.basename(start)))

    # ------------------------------------------------------------------ random state
    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint['rng_state'] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint):
        self._rng_to_restore = checkpoint.get('rng_state')

    def after_resume_data_skip(self, runner):
        """Custom stage of ``ResumableIterBasedTrainLoop``: the loader replay is done."""
        state, self._rng_to_restore = self._rng_to_restore, None
        # the checkpoint holds rank 0's generators: right for every rank only when all ranks
        # share the seed (mmengine's default, diff_rank_seed=False)
        diff_rank_seed = runner.cfg.get('randomness', {}).get('diff_rank_seed', False)
        if state is not None and (runner.world_size == 1 or not diff_rank_seed):
            set_rng_state(state)
            runner.logger.info('Restored the random generators saved in the checkpoint')

    # ------------------------------------------------------------------ atomic saving
    def _save_best_checkpoint(self, runner, metrics):
        if not isinstance(self.file_backend, LocalBackend) or not self.save_best:
            return super()._save_best_checkpoint(runner, metrics)
        deferred, save = [], runner.save_checkpoint

        def save_atomically(out_dir, filename, *args, **kwargs):
            if filename.endswith('.tmp'):  # mmengine's re-save of the periodic checkpoint,
                return save(out_dir, filename, *args, **kwargs)  # already a temporary
            tmp = osp.join(out_dir, filename + '.tmp')
            try:
                save(out_dir, filename + '.tmp', *args, **kwargs)
            except BaseException:
                if is_main_process() and osp.exists(tmp):
                    os.remove(tmp)
                raise
            if is_main_process():
                fsync_replace(tmp, osp.join(out_dir, filename))

        # instance attributes shadow the methods for this call only
        runner.save_checkpoint = save_atomically
        self.file_backend.remove = deferred.append
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            del runner.save_checkpoint
            del self.file_backend.remove
        keep = {getattr(self, 'best_ckpt_path', None)} | set(
            getattr(self, 'best_ckpt_path_dict', {}).values())
        mine = osp.realpath(self.out_dir)
        for path in deferred:
            if path in keep or not osp.isfile(path):
                continue
            if osp.dirname(osp.realpath(path)) != mine:  # another run's (a resumed fork)
                runner.logger.info(f'The previous best checkpoint {path} belongs to another '
                                   'run folder; kept')
                continue
            self.file_backend.remove(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        name = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, name)
        # the rotation is committed only once the save succeeded, so a failed save can be retried
        # (mmengine makes keep_ckpt_ids only when it rotates: max_keep_ckpts > 0)
        rotating = self.max_keep_ckpts > 0
        keep, outdated = list(self.keep_ckpt_ids) if rotating else [], []
        if rotating:
            if not keep or keep[-1] != step:
                keep.append(step)
            outdated = keep[:max(0, len(keep) - self.max_keep_ckpts)]
            keep = keep[len(outdated):]
            runner.message_hub.update_info('keep_ckpt_ids', keep)  # recorded in the checkpoint
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        try:
            runner.save_checkpoint(
                self.out_dir, name + '.tmp', self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        except BaseException:
            if is_main_process() and osp.exists(self.last_ckpt + '.tmp'):
                os.remove(self.last_ckpt + '.tmp')
            if rotating:
                runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
            raise
        if rotating:
            self.keep_ckpt_ids.clear()
            self.keep_ckpt_ids.extend(keep)
        if not is_main_process():
            return
        fsync_replace(self.last_ckpt + '.tmp', self.last_ckpt)
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        # delete old checkpoints only once the new one is in place
        for old in outdated:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path):
                self.file_backend.remove(path)
