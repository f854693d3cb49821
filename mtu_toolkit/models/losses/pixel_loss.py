"""Per-pixel losses between a restored frame and its sharp frame (registered: a config picks
them by name, a plugin adds its own, e.g. a Charbonnier loss)."""
import torch.nn as nn
import torch.nn.functional as F

from ...registry import MODELS


@MODELS.register_module()
class L1Loss(nn.Module):
    """Mean absolute error of (N, C, H, W) tensors (intensities in [0, 1])."""

    def forward(self, pred, target):
        return F.l1_loss(pred, target)


@MODELS.register_module()
class MSELoss(nn.Module):
    """Mean squared error of (N, C, H, W) tensors (intensities in [0, 1])."""

    def forward(self, pred, target):
        return F.mse_loss(pred, target)
