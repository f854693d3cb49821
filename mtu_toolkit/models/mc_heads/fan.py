"""Filter-adaptive alignment (STFAN's FAC layer, Zhou et al., ICCV 2019) as an MC head."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import MODELS
from ..layers import ResidualBlock, conv, make_layer
from .base import BaseMCHead


@MODELS.register_module(name=['FANMCHead', 'fan'])
class FANMCHead(BaseMCHead):
    """STFAN-style alignment: per-pixel, per-channel ``k x k`` filters on the previous feature.

    Follows the filter adaptive convolution (FAC) of STFAN ("Spatio-Temporal Filter Adaptive
    Network for Video Deblurring", Zhou et al., ICCV 2019): a kernel-prediction network looks at
    both frames' features and predicts, for every pixel and every channel of the feature to
    align, a ``k x k`` filter; the aligned feature is the previous feature filtered by them.
    This is the "FAN" the paper compares its MC head with (Sec. 4.4).

    Our choice of resolution: the kernels are predicted at 1/4 resolution from the motion
    features (``cat(cur, prev)``, 2 x 2ch channels), where a ``ch*k*k``-channel output is
    affordable, and each 4x4 block of the full-resolution feature shares its block's kernels
    (nearest upsampling of the kernels, never materialised: the filtering loops over the
    ``k*k`` taps and broadcasts). The last layer starts at the identity filter (centre tap 1),
    so an untrained head passes the previous feature on unchanged.

    Args:
        motion_channels (int): channels of the motion features (2ch), at 1/4 resolution.
        feat_channels (int): channels of the feature to align (ch), at full resolution.
        kernel_size (int): k, odd. Default 5.
        mid_channels (int): width of the kernel-prediction network. Default 128.
        num_blocks (int): residual blocks in it. Default 4.

    Parameters: 2,050,058 at ch 26 (defaults): 3x3 conv 104 -> 128, four residual blocks of two
    3x3 convs on 128, 3x3 conv 128 -> 26*25 (the paper quotes ~2.3M for FAN's kernel network).
    """

    def __init__(self, motion_channels, feat_channels, kernel_size=5, mid_channels=128,
                 num_blocks=4):
        super().__init__(motion_channels, feat_channels)
        if kernel_size % 2 != 1:
            raise ValueError(f'kernel_size must be odd, got {kernel_size}')
        self.kernel_size = kernel_size
        taps = kernel_size * kernel_size
        # kernel prediction
        self.kernel_net = nn.Sequential(
            conv(2 * motion_channels, mid_channels),
            make_layer(ResidualBlock, num_blocks, channels=mid_channels),
            conv(mid_channels, feat_channels * taps, relu=False))
        # start at the identity filter: zero weights, centre tap bias 1
        last = self.kernel_net[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.view(feat_channels, taps).copy_(F.one_hot(
                torch.tensor(taps // 2), taps).float())

    def estimate(self, cur, prev):
        """cur, prev (N, 2ch, h, w) -> dict(motion=kernels (N, ch, k*k, h, w)). No cost volume."""
        kernels = self.kernel_net(torch.cat((cur, prev), 1))
        n, _, h, w = kernels.shape
        return dict(motion=kernels.view(n, self.feat_channels, -1, h, w))

    def warp(self, feat, motion):
        """Filter ``feat`` (N, ch, H, W) by ``motion`` (N, ch, k*k, H/4, W/4); zero padding.

        ``out[n,c,y,x] = sum_{i,j} K[n,c,i*k+j,y//4,x//4] * feat[n,c,y+i-r,x+j-r]``, r = k//2.
        """
        n, c, height, width = feat.shape
        s, k, r = self.scale, self.kernel_size, self.kernel_size // 2
        h, w = height // s, width // s
        if motion.shape[-2:] != (h, w):
            raise ValueError(f'kernels at {tuple(motion.shape[-2:])} do not match a '
                             f'{height}x{width} feature (expected {h}x{w})')
        padded = F.pad(feat, (r, r, r, r))
        # (N, C, h, 1, w, 1) per tap: every 4x4 block of the output shares its kernel
        kernels = motion.view(n, c, k * k, h, 1, w, 1)
        out = feat.new_zeros(n, c, h, s, w, s)
        for i in range(k):
            for j in range(k):
                tap = padded[:, :, i:i + height, j:j + width].reshape(n, c, h, s, w, s)
                out = out + kernels[:, :, i * k + j] * tap
        return out.view(n, c, height, width)

    def warp_macs(self, feat, motion):
        """k*k multiply-accumulates per element of the filtered feature."""
        return self.kernel_size ** 2 * feat.numel()
