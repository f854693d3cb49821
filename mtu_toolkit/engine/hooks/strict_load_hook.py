"""Strict checkpoint loading for mmengine's Runner (``load_from`` and ``resume``)."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...registry import HOOKS
from ..checkpoint import CheckpointLoadError, fit_state_dict

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
    """

    priority = 'VERY_HIGH'  # before any other hook reads the checkpoint

    def after_load_checkpoint(self, runner, checkpoint):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        source = getattr(runner, '_load_from', None) or 'checkpoint'
        config = getattr(runner.cfg, 'filename', None) or '<config>'
        where = f'checkpoint {source} for config {config}'
        holds_state = isinstance(checkpoint.get('state_dict'), dict)
        state = checkpoint['state_dict'] if holds_state else checkpoint
        fitted = fit_state_dict(model, state, where, report=runner.logger.info)
        if getattr(runner, '_resume', False):
            self._check_training_state(runner, checkpoint, holds_state, where)
        if holds_state:
            checkpoint['state_dict'] = fitted
        else:  # a plain state dict: mmengine loads the checkpoint itself
            fitted = dict(fitted)  # (fit_state_dict may give back `checkpoint` itself)
            checkpoint.clear()
            checkpoint.update(fitted)

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


def add_strict_loading(cfg):
    """Add :class:`StrictLoadCheckpointHook` to ``cfg.custom_hooks`` (once); returns ``cfg``."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(isinstance(h, dict) and h.get('type', '').rpartition('.')[2] ==
               'StrictLoadCheckpointHook' for h in hooks):
        hooks.append(dict(STRICT_LOAD_HOOK))
    cfg.custom_hooks = hooks
    return cfg
