"""Optimiser wrappers: the two-optimiser recipe of the paper, and bfloat16 autocast on CPU."""
import copy
from contextlib import contextmanager

import torch
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict

from ..checked_registry import ComponentArgumentError
from ..registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS


@OPTIM_WRAPPERS.register_module()
class BF16AutocastOptimWrapper(OptimWrapper):
    """:class:`OptimWrapper` whose forward context is ``torch.autocast(device, bfloat16)``.

    mmengine's ``AmpOptimWrapper`` (float16 + loss scaling) requires CUDA; bfloat16 has float32's
    exponent range, so it needs no loss scale and runs on CPU too. ``tools/train.py --amp`` picks
    this wrapper when there is no GPU. Arguments as :class:`OptimWrapper`.
    """

    @contextmanager
    def optim_context(self, model):
        param = next(model.parameters(), None)
        device = param.device.type if param is not None else 'cpu'
        with super().optim_context(model), torch.autocast(device, dtype=torch.bfloat16):
            yield


def check_wrapper_entries(wrappers):
    """Refuse an entry of a named-wrappers ``optim_wrapper`` (``{name: wrapper config}``,
    without ``constructor``) that is not a wrapper config with an ``optimizer``: e.g. the
    one-optimiser spelling ``optim_wrapper.optimizer.lr`` on the two-optimiser recipe. One
    line naming the config's optimisers (:class:`ComponentArgumentError`)."""
    for name, cfg in wrappers.items():
        if not isinstance(cfg, dict) or 'optimizer' not in cfg:
            named = [k for k, v in wrappers.items() if isinstance(v, dict) and 'optimizer' in v]
            names = ' and '.join(f'optim_wrapper.{k}' for k in named)
            hint = (f" (this config's optimisers are {names}: e.g. "
                    f'optim_wrapper.{named[0]}.optimizer.<key>)' if named else '')
            raise ComponentArgumentError(
                f'optim_wrapper.{name}: expected an optimiser-wrapper config with an '
                f"'optimizer', got {cfg!r}{hint}")


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MTUOptimWrapperConstructor:
    """Builds one optimiser wrapper per parameter group of the model: the paper's recipe.

    The reference implementation trains with two Adam optimisers whose updates are summed every
    frame: one on the deblurring loss, one on the motion (distillation) cross-entropy at 0.01 x
    the learning rate, over the parameter sets of ``model.optim_param_groups()`` (see
    :meth:`~mtu_toolkit.models.MTUNet.parameter_groups`); each gradient is clipped on its own.
    Config (each entry an ordinary optimiser-wrapper config)::

        optim_wrapper = dict(
            constructor='MTUOptimWrapperConstructor',
            deblur=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4),
                        clip_grad=dict(max_norm=1.0)),
            motion=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-6),
                        clip_grad=dict(max_norm=1.0)))

    The result is an ``OptimWrapperDict``: both optimisers' states go into checkpoints and
    resume exactly; a ``param_scheduler`` list applies to each (mmengine's rule).
    """

    def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
        if paramwise_cfg:
            raise ComponentArgumentError(
                'MTUOptimWrapperConstructor: paramwise_cfg is not supported; the parameter '
                'groups come from model.optim_param_groups()')
        self.cfgs = copy.deepcopy(dict(optim_wrapper_cfg))
        check_wrapper_entries(self.cfgs)

    def __call__(self, model):
        model = model.module if is_model_wrapper(model) else model
        groups = model.optim_param_groups()
        unknown = sorted(set(self.cfgs) - set(groups))
        if unknown:
            raise ComponentArgumentError(f'optim_wrapper: no parameter group {unknown} in the '
                                         f'model (it has {sorted(groups)})')
        wrappers = {}
        for name, cfg in self.cfgs.items():
            cfg = copy.deepcopy(cfg)
            optimizer = OPTIMIZERS.build(dict(cfg.pop('optimizer'), params=groups[name]))
            cfg.setdefault('type', 'OptimWrapper')
            wrappers[name] = OPTIM_WRAPPERS.build(cfg, default_args=dict(optimizer=optimizer))
        return OptimWrapperDict(**wrappers)
