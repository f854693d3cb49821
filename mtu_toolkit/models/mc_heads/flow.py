"""A small coarse-to-fine optical-flow network plus bilinear warping (BIMNet / PWC-Net style)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...ops import correlation
from ...registry import MODELS
from ..layers import conv
from .base import BaseMCHead


def flow_warp(feat, flow):
    """Bilinear backward warp: ``out(x) = feat(x + flow(x))``, zero outside the frame.

    Args:
        feat (Tensor): (N, C, H, W).
        flow (Tensor): (N, 2, H, W) displacement (dx, dy) in pixels, from ``feat``'s target
            frame into ``feat``.

    Returns:
        Tensor: (N, C, H, W); differentiable w.r.t. both inputs.
    """
    n, _, h, w = feat.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=feat.device, dtype=flow.dtype),
                            torch.arange(w, device=feat.device, dtype=flow.dtype), indexing='ij')
    # align_corners=True: -1 and 1 are the centres of the first and last pixels
    gx = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    gy = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack((gx, gy), -1).to(feat.dtype)
    return F.grid_sample(feat, grid, mode='bilinear', padding_mode='zeros', align_corners=True)


def upsample_flow(flow, size):
    """Bilinearly resize a flow field (N, 2, h, w) to ``size`` (H, W), rescaling its values."""
    h, w = flow.shape[-2:]
    up = F.interpolate(flow, size=size, mode='bilinear', align_corners=False)
    scale = flow.new_tensor([size[1] / w, size[0] / h]).view(1, 2, 1, 1)
    return up * scale


@MODELS.register_module(name=['FlowMCHead', 'flow'])
class FlowMCHead(BaseMCHead):
    """Dense optical flow by a PWC-Net-style pyramid, then bilinear warping of the feature.

    Follows the flow-based alignment the paper compares with (BIMNet, "Blur-Invariant Motion
    Estimation", Jiang et al., CVPR 2020, itself built on PWC-Net, Sun et al., CVPR 2018): a
    siamese feature pyramid over both frames' motion features (1/4, 1/8, 1/16 resolution for 3
    levels), at each level a cost volume (``mtu_toolkit.ops.correlation`` of D=4 on the
    previous frame's features warped by the upsampled coarser flow, divided by the channel
    count, leaky ReLU 0.1) and a convolutional estimator of the residual flow. The 1/4-resolution
    flow is upsampled bilinearly to full resolution (values x4) and warps the previous feature
    bilinearly (``F.grid_sample``, zeros outside). The estimators' last layers start at zero, so
    an untrained head passes the previous feature on unchanged.

    ``estimate`` returns no cost volume: the flow is continuous and the head is trained through
    the deblur loss only (the motion loss of the restorer is skipped for it).

    Args:
        motion_channels (int): channels of the motion features (2ch), at 1/4 resolution.
        feat_channels (int): channels of the feature to warp (ch); unused by the flow network.
        pyramid_channels (tuple[int]): feature channels per level, fine to coarse.
            Default (64, 96, 128): three levels.
        max_displacement (int): D of every level's cost volume. Default 4 (81 shifts).
        estimator_channels (tuple[int]): widths of each level's 3x3 flow estimator.
            Default (128, 128, 96, 64, 32).

    Parameters: 2,078,406 at ch 26 (defaults) (the paper quotes ~5.3M for BIMNet).
    """

    def __init__(self, motion_channels, feat_channels, pyramid_channels=(64, 96, 128),
                 max_displacement=4, estimator_channels=(128, 128, 96, 64, 32)):
        super().__init__(motion_channels, feat_channels)
        self.max_displacement = int(max_displacement)
        self.pyramid_channels = tuple(pyramid_channels)
        volume = (2 * self.max_displacement + 1) ** 2
        # feature pyramid (shared by both frames)
        ins = (motion_channels,) + self.pyramid_channels[:-1]
        self.pyramid = nn.ModuleList(
            nn.Sequential(conv(cin, cout, stride=1 if level == 0 else 2), conv(cout, cout))
            for level, (cin, cout) in enumerate(zip(ins, self.pyramid_channels)))
        # flow estimators, one per level; all but the coarsest also see the upsampled flow
        coarsest = len(self.pyramid_channels) - 1
        self.estimators = nn.ModuleList(
            self._estimator(volume + c + (0 if level == coarsest else 2), estimator_channels)
            for level, c in enumerate(self.pyramid_channels))

    @staticmethod
    def _estimator(in_channels, widths):
        layers, cin = [], in_channels
        for cout in widths:
            layers.append(conv(cin, cout))
            cin = cout
        last = conv(cin, 2, relu=False)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return nn.Sequential(*layers, last)

    def _features(self, x):
        feats = []
        for level in self.pyramid:
            x = level(x)
            feats.append(x)
        return feats

    def _cost_volume(self, f1, f2):
        volume = correlation(f1.contiguous(), f2.contiguous(), self.max_displacement)
        return F.leaky_relu(volume / f1.shape[1], 0.1)

    def estimate(self, cur, prev):
        """cur, prev (N, 2ch, h, w) -> dict(motion=flow (N, 2, 4h, 4w) in full-res pixels)."""
        feats_cur, feats_prev = self._features(cur), self._features(prev)
        flow = None
        for level in reversed(range(len(self.pyramid))):
            f1, f2 = feats_cur[level], feats_prev[level]
            if flow is None:
                x = torch.cat((self._cost_volume(f1, f2), f1), 1)
                flow = self.estimators[level](x)
            else:
                up = upsample_flow(flow, f1.shape[-2:])
                x = torch.cat((self._cost_volume(f1, flow_warp(f2, up)), f1, up), 1)
                flow = up + self.estimators[level](x)
        h, w = cur.shape[-2:]
        return dict(motion=upsample_flow(flow, (self.scale * h, self.scale * w)))

    def displacement(self, motion, frame):
        """The full-resolution flow itself."""
        return motion, 1

    def warp(self, feat, motion):
        """feat (N, ch, H, W), motion flow (N, 2, H, W) -> (N, ch, H, W), bilinear, zero outside."""
        return flow_warp(feat, motion)

    def estimate_macs(self, cur, prev):
        """Multiply-accumulates of one :meth:`estimate` outside convolutions: the cost volumes."""
        shifts = (2 * self.max_displacement + 1) ** 2
        h, w = cur.shape[-2:]
        total = 0
        for c in self.pyramid_channels:
            total += shifts * c * h * w
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return cur.shape[0] * total
