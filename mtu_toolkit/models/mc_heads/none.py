"""No alignment: the previous feature is passed on as it is (the "MC off" ablation, Table 2)."""
from ...registry import MODELS
from .base import BaseMCHead


@MODELS.register_module(name=['NoneMCHead', 'none'])
class NoneMCHead(BaseMCHead):
    """Identity 'alignment'; the previous frame's feature reaches the next unit unaligned.

    Args:
        motion_channels (int): unused; kept for the common interface.
        feat_channels (int): unused; kept for the common interface.

    Parameters: 0.
    """

    #: the backbone skips its motion layer for heads that do not look at motion features
    needs_motion_features = False

    def estimate(self, cur, prev):
        return dict(motion=None)

    def warp(self, feat, motion):
        return feat

    def displacement(self, motion, frame):
        """No alignment: the zero displacement (the baseline the others are measured against)."""
        n, _, h, w = frame.shape
        return frame.new_zeros(n, 2, -(-h // self.scale), -(-w // self.scale)), self.scale
