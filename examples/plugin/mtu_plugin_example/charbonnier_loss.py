"""A Charbonnier (smooth L1) pixel loss: the multi-output weighting stays the toolkit's."""
import torch
import torch.nn as nn

from mtu_toolkit.registry import MODELS


@MODELS.register_module()
class CharbonnierLoss(nn.Module):
    """``mean(sqrt((pred - target)^2 + eps^2))`` of (N, C, H, W) tensors.

    A per-pixel loss for ``MultiOutputDeblurLoss(pixel_loss=dict(type='CharbonnierLoss'))``,
    which weights the final and the auxiliary outputs as for any pixel loss.

    Args:
        eps (float): smoothness near zero, in [0, 1] intensity units. Default 1e-3.
    """

    def __init__(self, eps=1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, pred, target):
        return torch.sqrt((pred - target) ** 2 + self.eps ** 2).mean()
