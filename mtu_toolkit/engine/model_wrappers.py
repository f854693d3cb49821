"""DDP wrapper that keeps the restorer's one-optimiser-step-per-frame training."""
from mmengine.model import MMDistributedDataParallel

from ..registry import MODEL_WRAPPERS


class _Opaque:
    """Hides a value from DDP's search for output tensors (it looks into dataclasses too)."""

    def __init__(self, value):
        self.value = value


@MODEL_WRAPPERS.register_module()
class MTUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` for models whose ``train_step`` steps once per frame.

    mmengine's wrapper runs one forward and one optimiser step per iteration, which would skip
    the restorer's per-frame loop. Here the restorer runs its own loop and routes each frame's
    forward through this wrapper, so DDP all-reduces gradients at every per-frame step and all
    ranks keep identical weights.

    A frame's forward returns ``(losses, state)``. With ``find_unused_parameters=True`` DDP
    treats every parameter reachable from the outputs as used; the recurrent state reaches the
    motion layer, which gets no gradient at a clip's first frame, and DDP would wait for it
    forever. A forward hook therefore hides the state from DDP: only the losses count.

    ``device_ids`` is dropped for CPU modules (gloo), where DDP refuses it; mmengine's Runner
    always passes ``[LOCAL_RANK]``.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        first = next(module.parameters(), None)
        if first is None or first.device.type == 'cpu':
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)
        self._in_frame_step = False
        self.module.register_forward_hook(self._hide_state, with_kwargs=True)

    def _hide_state(self, module, args, kwargs, output):
        if self._in_frame_step and kwargs.get('mode') == 'frame_loss':
            losses, state = output
            return losses, _Opaque(state)
        return None

    def _frame_forward(self, *args, **kwargs):
        losses, state = self(*args, **kwargs)
        return losses, state.value if isinstance(state, _Opaque) else state

    def train_step(self, data, optim_wrapper):
        self._in_frame_step = True
        try:
            return self.module.train_step(data, optim_wrapper, forward=self._frame_forward)
        finally:
            self._in_frame_step = False
