"""A camera-shake MC head: one global translation per frame, blended by a learned gate."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mtu_toolkit.models.mc_heads import BaseMCHead
from mtu_toolkit.ops import correlation, warp_by_displacement
from mtu_toolkit.registry import MODELS


@MODELS.register_module()
class GlobalShiftMCHead(BaseMCHead):
    """Align by the single integer shift that best matches the whole frame.

    The cosine cost volume of the motion features (``mtu_toolkit.ops.correlation``) is averaged
    over the frame; its argmax is one (dx, dy) per frame at 1/4 resolution, which warps the
    full-resolution feature by 4 * (dx, dy). A learned per-channel gate blends the aligned and
    the unaligned feature (so the head can fall back to no alignment where a global shift is
    wrong).

    Args:
        motion_channels (int): channels of the motion features (2ch), at 1/4 resolution.
        feat_channels (int): channels of the feature to warp (ch).
        max_displacement (int): D of the search, in 1/4-resolution pixels. Default 4.

    Parameters: ``feat_channels`` (the gate).
    """

    def __init__(self, motion_channels, feat_channels, max_displacement=4):
        super().__init__(motion_channels, feat_channels)
        self.max_displacement = int(max_displacement)
        # sigmoid(2) ~ 0.88: start mostly aligned
        self.gate = nn.Parameter(torch.full((1, feat_channels, 1, 1), 2.0))

    def estimate(self, cur, prev):
        """cur, prev (N, 2ch, h, w) -> dict(motion=int64 (N, 2, h, w), one shift everywhere)."""
        d = self.max_displacement
        with torch.no_grad():
            volume = correlation(F.normalize(cur, dim=1).contiguous(),
                                 F.normalize(prev, dim=1).contiguous(), d)
            idx = volume.mean((2, 3)).argmax(1)  # (N,)
        shift = torch.stack((idx % (2 * d + 1) - d, idx // (2 * d + 1) - d), 1)
        return dict(motion=shift[:, :, None, None].expand(-1, -1, *cur.shape[-2:]).contiguous())

    def warp(self, feat, motion):
        """feat (N, ch, H, W), motion (N, 2, H/4, W/4) -> (N, ch, H, W)."""
        gate = torch.sigmoid(self.gate)
        return gate * warp_by_displacement(feat, motion, self.scale) + (1 - gate) * feat
