"""Multi-output deblurring loss (paper Eq. 1, as the reference implementation weights it)."""
import torch.nn as nn

from ...checked_registry import ComponentArgumentError
from ...registry import MODELS
from .frame_loss import FrameLoss

#: the ``loss_type`` shorthands of :class:`MultiOutputDeblurLoss`
LOSS_TYPES = {'l1': ('L1Loss',), 'mse': ('MSELoss',), 'l1+mse': ('L1Loss', 'MSELoss')}


@MODELS.register_module()
class MultiOutputDeblurLoss(FrameLoss):
    """``w_final * L(I^r, I^GT) + w_aux * reduce_n L(I^{r,n}, I^GT)`` over the auxiliary
    outputs of units 1..N-1, where ``L`` is the sum of the pixel losses.

    The reference implementation uses L1 + MSE and weights the N-1 auxiliary outputs by 0.1 x
    their mean (0.1 in all, whatever N): the defaults.

    Args:
        pixel_loss (dict | list[dict]): registered per-pixel loss(es) ``loss(pred, target)``
            (``L1Loss``, ``MSELoss``, a plugin's), summed. Default L1 + MSE.
        final_weight (float): weight of the last unit's output. Default 1.0.
        aux_weight (float): weight of the auxiliary outputs. Default 0.1.
        aux_reduction (str): 'mean' (the reference: ``aux_weight`` in all) or 'sum'
            (``aux_weight`` each).
        loss_type (str | None): shorthand for ``pixel_loss``: 'l1', 'mse' or 'l1+mse'.
    """

    def __init__(self, pixel_loss=(dict(type='L1Loss'), dict(type='MSELoss')), final_weight=1.0,
                 aux_weight=0.1, aux_reduction='mean', loss_type=None):
        super().__init__()
        if loss_type is not None:
            if loss_type not in LOSS_TYPES:
                raise ComponentArgumentError(f'MultiOutputDeblurLoss: loss_type must be one of '
                                             f'{sorted(LOSS_TYPES)}, got {loss_type!r}')
            pixel_loss = [dict(type=name) for name in LOSS_TYPES[loss_type]]
        if aux_reduction not in ('mean', 'sum'):
            raise ComponentArgumentError(f"MultiOutputDeblurLoss: aux_reduction must be 'mean' "
                                         f"or 'sum', got {aux_reduction!r}")
        cfgs = [pixel_loss] if isinstance(pixel_loss, dict) else list(pixel_loss)
        self.pixel_losses = nn.ModuleList(MODELS.build(cfg) for cfg in cfgs)
        self.final_weight = final_weight
        self.aux_weight = aux_weight
        self.aux_reduction = aux_reduction

    def pixel(self, pred, target):
        """The summed pixel losses of one output."""
        return sum(loss(pred, target) for loss in self.pixel_losses)

    def forward(self, out, aux_outs, gt):
        """out: (N, 3, H, W) final output; aux_outs: list of (N, 3, H, W); gt: (N, 3, H, W)."""
        loss = self.final_weight * self.pixel(out, gt)
        if aux_outs:
            aux = sum(self.pixel(a, gt) for a in aux_outs)
            if self.aux_reduction == 'mean':
                aux = aux / len(aux_outs)
            loss = loss + self.aux_weight * aux
        return loss

    def frame_term(self, outputs, targets):
        return self(outputs['out'], outputs['aux_outs'], targets['gt'])
