"""Multi-output deblurring loss (paper Eq. 1)."""
import torch.nn as nn
import torch.nn.functional as F

from ...registry import MODELS


def pixel_loss(pred, target, loss_type):
    """Mean per-pixel loss between (N, 3, H, W) tensors: 'l1', 'mse' or 'l1+mse'."""
    if loss_type == 'l1':
        return F.l1_loss(pred, target)
    if loss_type == 'mse':
        return F.mse_loss(pred, target)
    if loss_type == 'l1+mse':
        return F.l1_loss(pred, target) + F.mse_loss(pred, target)
    raise ValueError(f"loss_type must be 'l1', 'mse' or 'l1+mse', got {loss_type!r}")


@MODELS.register_module()
class MultiOutputDeblurLoss(nn.Module):
    """``sum_n lambda_n * loss(I^{r,n}, I^GT)`` over the restored frames of all units.

    Args:
        final_weight (float): lambda_N of the last unit's output. Default 1.0.
        aux_weight (float): lambda_n of each auxiliary output (units 1..N-1). Default 0.1.
        loss_type (str): per-output loss, 'l1' (the paper), 'l1+mse' (the reference) or 'mse'.
    """

    def __init__(self, final_weight=1.0, aux_weight=0.1, loss_type='l1'):
        super().__init__()
        if loss_type not in ('l1', 'mse', 'l1+mse'):
            raise ValueError(f"loss_type must be 'l1', 'mse' or 'l1+mse', got {loss_type!r}")
        self.final_weight = final_weight
        self.aux_weight = aux_weight
        self.loss_type = loss_type

    def forward(self, out, aux_outs, gt):
        """out: (N, 3, H, W) final output; aux_outs: list of (N, 3, H, W); gt: (N, 3, H, W)."""
        loss = self.final_weight * pixel_loss(out, gt, self.loss_type)
        for aux in aux_outs:
            loss = loss + self.aux_weight * pixel_loss(aux, gt, self.loss_type)
        return loss
