"""The interface every motion-compensation (MC) head implements.

An MC head aligns the previous frame's feature to the current frame. It sees the motion
features of both frames (``2*ch`` channels at 1/4 resolution, from the backbone's motion layer)
and warps a full-resolution feature (``ch`` channels)::

    warped, aux = head(cur_motion, prev_motion, feat_prev)

``estimate`` and ``warp`` are separate so that the backbone can match once (first unit) and
re-use the motion in every later unit (feature-matching skipping, paper App. A.3).
"""
import torch.nn as nn


class BaseMCHead(nn.Module):
    """Base class of MC heads.

    Args:
        motion_channels (int): channels of the motion features (``2*ch``), at 1/4 resolution.
        feat_channels (int): channels of the feature to warp (``ch``), at full resolution.
    """

    #: ratio between the feature to warp and the motion features' resolution
    scale = 4
    #: False for heads that ignore motion features (the backbone then builds no motion layer)
    needs_motion_features = True

    def __init__(self, motion_channels, feat_channels):
        super().__init__()
        self.motion_channels = motion_channels
        self.feat_channels = feat_channels

    def estimate(self, cur, prev):
        """Estimate motion from ``cur`` (N, 2ch, h, w) to ``prev`` (N, 2ch, h, w).

        Returns:
            dict: ``motion`` (whatever :meth:`warp` takes) and, for heads trained with the
            motion loss, ``cost_volume`` (N, (2D+1)^2, h, w) logits and ``max_displacement`` D.
        """
        raise NotImplementedError

    def warp(self, feat, motion):
        """Warp ``feat`` (N, ch, H, W) with ``motion`` from :meth:`estimate`; H = 4h, W = 4w."""
        raise NotImplementedError

    def forward(self, cur, prev, feat):
        aux = self.estimate(cur, prev)
        return self.warp(feat, aux['motion']), aux
