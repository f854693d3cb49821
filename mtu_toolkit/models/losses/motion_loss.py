"""Motion loss: cross-entropy of the cost volume against flow-derived one-hot targets (Eq. 2)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import MODELS


def flow_to_motion_target(flow, max_displacement, scale=4):
    """Turn a full-resolution optical flow into the motion loss's class targets.

    Args:
        flow (Tensor): (N, 2, H, W) float, (dx, dy) in full-resolution pixels from frame t to
            frame t-1 (``gt_t(x) ~ gt_{t-1}(x + flow(x))``).
        max_displacement (int): D of the cost volume.
        scale (int): resolution ratio of the cost volume. Default 4.

    Returns:
        Tensor: int64 (N, ceil(H/scale), ceil(W/scale)), class index
        ``(round(fy)+D) * (2D+1) + (round(fx)+D)`` of the area-downsampled flow divided by
        ``scale`` and clamped to [-D, D] (H, W not multiples of ``scale`` are edge-padded).
    """
    d = int(max_displacement)
    h, w = flow.shape[-2:]
    pad_h, pad_w = -h % scale, -w % scale
    if pad_h or pad_w:
        flow = F.pad(flow, (0, pad_w, 0, pad_h), mode='replicate')
    small = F.avg_pool2d(flow.float(), scale) / scale
    small = small.clamp(-d, d).round().long() + d
    return small[:, 1] * (2 * d + 1) + small[:, 0]


@MODELS.register_module()
class MotionCrossEntropyLoss(nn.Module):
    """``alpha * CE(softmax(C), one_hot(target))`` averaged over positions, summed over volumes.

    Args:
        loss_weight (float): alpha. Default 0.01 (the paper).
    """

    def __init__(self, loss_weight=0.01):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, cost_volumes, flow, max_displacement):
        """cost_volumes: list of (N, (2D+1)^2, h, w) logits; flow: (N, 2, H, W) with H = 4h."""
        target = flow_to_motion_target(flow, max_displacement)
        loss = 0.
        for volume in cost_volumes:
            loss = loss + F.cross_entropy(volume, target[:, :volume.shape[2], :volume.shape[3]])
        return self.loss_weight * loss
