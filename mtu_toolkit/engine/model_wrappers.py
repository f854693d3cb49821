"""DDP wrapper that keeps the restorer's per-frame optimiser steps (one or two optimisers)."""
import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel

from ..registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class MTUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` for the restorer, whose ``train_step`` steps once per
    frame, and with the two-optimiser recipe runs two backward passes per frame.

    DDP all-reduces gradients in the one backward that follows its forward, which fits neither.
    Here DDP only broadcasts the weights at the start; the restorer's ``train_step`` runs the
    module itself and calls :meth:`sync_grads` after each backward, which averages the
    gradients over the processes (one flat all-reduce), so every rank steps with the same
    gradient and all ranks keep identical weights.

    ``device_ids`` is dropped for CPU modules (gloo), where DDP refuses it; mmengine's Runner
    always passes ``[LOCAL_RANK]``.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        first = next(module.parameters(), None)
        if first is None or first.device.type == 'cpu':
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)

    @staticmethod
    def sync_grads(params):
        """Average the gradients of ``params`` over the processes, in place."""
        grads = [p.grad for p in params]
        if not grads or dist.get_world_size() == 1:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(dist.get_world_size())
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def train_step(self, data, optim_wrapper):
        return self.module.train_step(data, optim_wrapper, sync_grads=self.sync_grads)
