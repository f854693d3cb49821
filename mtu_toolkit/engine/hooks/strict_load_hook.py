"""Strict checkpoint loading for mmengine's Runner (``load_from`` and ``resume``)."""
from mmengine.hooks import EMAHook, Hook
from mmengine.model import is_model_wrapper

from ...checked_registry import ComponentArgumentError
from ...registry import HOOKS
from ..checkpoint import (CheckpointLoadError, fit_state_dict, network_settings_differences,
                          other_settings_message)

#: how the tools add the hook to a config's ``custom_hooks`` (the scope prefix lets the Runner
#: find it whatever the config's ``default_scope``)
STRICT_LOAD_HOOK = dict(type='mtu.StrictLoadCheckpointHook')


@HOOKS.register_module()
class StrictLoadCheckpointHook(Hook):
    """Refuse a checkpoint that does not fit the model, before the Runner loads it.

    mmengine's ``Runner.load_checkpoint`` loads non-strictly: a checkpoint of another variant
    would be tested (or fine-tuned) with part of the network left at its initial weights, and
    ``resume`` would fail later, blaming the optimiser's parameter groups. This hook runs the
    toolkit's one check (:func:`~mtu_toolkit.engine.checkpoint.fit_state_dict`, the one
    ``init_restorer`` uses) on every loaded checkpoint: one line naming the config, the
    checkpoint and what differs. A checkpoint without the training-only auxiliary deblur layers
    (a released test-time network) is accepted, and the log says so once.
    ``resume`` also needs the training state: a checkpoint without it (weights only, e.g.
    converted from a released file, or a ``best_*`` checkpoint, saved without the optimiser
    and schedulers) is refused there with a pointer to ``load_from`` and the latest
    ``iter_*.pth``.

    The weights do not show every setting of the network (the MC head's type and search range,
    the residual, ...): the hook records the config's in every checkpoint it sees saved
    (``meta['network_settings']``) and compares them with the loading config's. A checkpoint
    of other settings is refused, except where ``other_settings='warn'`` (``tools/train.py``
    for ``load_from``: fine-tuning under other settings on purpose), which logs one warning;
    ``resume`` always refuses.

    Args:
        other_settings (str): 'refuse' or 'warn' (see above).
    """

    priority = 'VERY_HIGH'  # before any other hook reads the checkpoint

    def __init__(self, other_settings='refuse'):
        if other_settings not in ('refuse', 'warn'):
            raise ComponentArgumentError(f"StrictLoadCheckpointHook: other_settings must be "
                                         f"'refuse' or 'warn', got {other_settings!r}")
        self.other_settings = other_settings

    def before_save_checkpoint(self, runner, checkpoint):
        from ...models.network_settings import network_settings  # (the engine loads first)
        meta = checkpoint.setdefault('meta', {})
        settings = network_settings(runner.cfg.get('model'))
        if settings is not None:
            meta['network_settings'] = settings
        meta['schedule'] = schedule_record(runner.cfg)

    def after_load_checkpoint(self, runner, checkpoint):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        source = getattr(runner, '_load_from', None) or 'checkpoint'
        config = getattr(runner.cfg, 'filename', None) or '<config>'
        where = f'checkpoint {source} for config {config}'
        holds_state = isinstance(checkpoint.get('state_dict'), dict)
        state = checkpoint['state_dict'] if holds_state else checkpoint
        fitted = fit_state_dict(model, state, where, report=runner.logger.info)
        resuming = getattr(runner, '_resume', False)
        if resuming:  # (a weights-only file cannot be resumed, whatever its settings)
            self._check_training_state(runner, checkpoint, holds_state, where)
            self._say_schedule_kept(runner, checkpoint.get('meta'), where)
        differences = network_settings_differences(
            checkpoint.get('meta') if holds_state else None, runner.cfg.get('model'))
        if differences:
            message = other_settings_message(where, differences)
            if resuming or self.other_settings == 'refuse':
                raise CheckpointLoadError(message)
            runner.logger.warning(f'{message} (fine-tuning under the config\'s settings)')
        if holds_state:
            checkpoint['state_dict'] = fitted
        else:  # a plain state dict: mmengine loads the checkpoint itself
            fitted = dict(fitted)  # (fit_state_dict may give back `checkpoint` itself)
            checkpoint.clear()
            checkpoint.update(fitted)

    @staticmethod
    def _say_schedule_kept(runner, meta, where):
        """One warning where the config's optimiser settings or schedule differ from those the
        checkpoint was trained with: mmengine resumes the saved optimiser and scheduler states
        (learning rates, the schedule's steps), not the config's edited ones."""
        from ...models.network_settings import record_differences
        saved = meta.get('schedule') if isinstance(meta, dict) else None
        differences = record_differences(saved, schedule_record(runner.cfg), unset='unset')
        if differences:
            runner.logger.warning(
                f'{where}: resuming restores the optimisers and learning-rate schedule saved '
                f'in the checkpoint, not the config\'s: {"; ".join(differences)} (to train '
                'with the new ones, start from it with load_from)')

    @staticmethod
    def _check_training_state(runner, checkpoint, holds_state, where):
        """Refuse to resume from a checkpoint that cannot restore the whole training state."""
        meta = checkpoint.get('meta') if holds_state else None
        if not isinstance(meta, dict) or 'iter' not in meta or 'message_hub' not in checkpoint:
            origin = (f"converted from the released file {meta['converted_from']}"
                      if isinstance(meta, dict) and 'converted_from' in meta else 'no meta')
            raise CheckpointLoadError(
                f'{where}: cannot resume from it: it holds model weights only ({origin}), '
                'not a training state (iteration, optimiser, message hub); start a '
                'training from it with load_from instead')
        if 'ema_state_dict' in checkpoint and not any(isinstance(h, EMAHook)
                                                      for h in runner.hooks):
            # mmengine's EMAHook saves the averaged weights as the state_dict and the trained
            # ones aside: resumed without it, training would go on from the average
            raise CheckpointLoadError(
                f'{where}: it was trained with EMAHook (its state_dict holds the averaged '
                'weights, ema_state_dict the trained ones): keep EMAHook in custom_hooks to '
                'resume, or start a training from it with load_from')
        lacking = [key for key, needed in (
            ('optimizer', True), ('param_schedulers', bool(getattr(runner, 'param_schedulers',
                                                                   None))))
            if needed and key not in checkpoint]
        if lacking:
            raise CheckpointLoadError(
                f'{where}: cannot resume from it: it has no {" or ".join(lacking)} state (a '
                'best_* checkpoint is saved without them), so the learning-rate schedule and '
                'the optimiser would start over; resume from the latest iter_*.pth, or start '
                'a training from this one with load_from')


def schedule_record(cfg):
    """What a checkpoint records of its optimisers' settings and learning-rate schedule (the
    state ``resume`` restores in place of the config's): plain values, each scheduler with the
    ``end`` mmengine gives one that sets none (the training's last iteration, or epoch)."""
    from ...models.network_settings import plain_record
    from ..launch import map_schedulers, optim_wrappers
    optimizers = {name or 'optim_wrapper': wrapper.get('optimizer')
                  for name, wrapper in optim_wrappers(cfg).items() if isinstance(wrapper, dict)}
    train_cfg = cfg.get('train_cfg') or {}

    def with_end(key, scheduler):
        end = train_cfg.get('max_epochs' if scheduler.get('by_epoch', True) else 'max_iters')
        return dict(scheduler) if 'end' in scheduler or end is None \
            else dict(scheduler, end=end)

    return plain_record(dict(optimizer=optimizers,
                             param_scheduler=map_schedulers(cfg.get('param_scheduler'),
                                                            with_end)))


def add_strict_loading(cfg, other_settings='refuse'):
    """Add :class:`StrictLoadCheckpointHook` with ``other_settings`` to ``cfg.custom_hooks``
    (once); returns ``cfg``. An entry already there (e.g. in the config copy another tool
    wrote into its work dir) is given this tool's ``other_settings``: testing refuses what
    fine-tuning only warns about, whatever the config copy says."""
    hooks, found = [], False
    for hook in cfg.get('custom_hooks') or []:
        if isinstance(hook, dict) and str(hook.get('type', '')).rpartition('.')[2] == \
                'StrictLoadCheckpointHook':
            hook, found = dict(hook, other_settings=other_settings), True
        hooks.append(hook)
    if not found:
        hooks.append(dict(STRICT_LOAD_HOOK, other_settings=other_settings))
    cfg.custom_hooks = hooks
    return cfg
