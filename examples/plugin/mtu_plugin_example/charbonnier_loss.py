"""Charbonnier deblur loss over all outputs of the stacked network."""
import torch
import torch.nn as nn

from mtu_toolkit.registry import MODELS


@MODELS.register_module()
class CharbonnierDeblurLoss(nn.Module):
    """``sum_n lambda_n * mean(sqrt((I^{r,n} - I^GT)^2 + eps^2))``, a smooth L1.

    Drop-in for ``MultiOutputDeblurLoss`` (same call: final output, auxiliary outputs, target).

    Args:
        final_weight (float): weight of the last unit's output. Default 1.0.
        aux_weight (float): weight of each auxiliary output. Default 0.1.
        eps (float): smoothness near zero, in [0, 1] intensity units. Default 1e-3.
    """

    def __init__(self, final_weight=1.0, aux_weight=0.1, eps=1e-3):
        super().__init__()
        self.final_weight, self.aux_weight, self.eps = final_weight, aux_weight, eps

    def charbonnier(self, pred, target):
        return torch.sqrt((pred - target) ** 2 + self.eps ** 2).mean()

    def forward(self, out, aux_outs, gt):
        """out: (N, 3, H, W); aux_outs: list of (N, 3, H, W); gt: (N, 3, H, W)."""
        loss = self.final_weight * self.charbonnier(out, gt)
        for aux in aux_outs:
            loss = loss + self.aux_weight * self.charbonnier(aux, gt)
        return loss
