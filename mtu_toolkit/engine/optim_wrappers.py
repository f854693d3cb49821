"""Mixed-precision training without a GPU: bfloat16 autocast, no loss scaling."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from ..registry import OPTIM_WRAPPERS


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
