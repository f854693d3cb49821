"""The multi-task detail network F^n: a small U-Net with residual blocks (``docs/network.md``)."""
import torch.nn as nn

from ..layers import ResidualBlock, conv, deconv, make_layer


class DetailNet(nn.Module):
    """U-Net of one multi-task unit: 2ch -> ch at full resolution.

    Args:
        channels (int): base channels ``ch`` (26; 48 for the L variant).
        num_blocks (int): residual blocks at 1/4 resolution (8; 6 for the L variant).

    Shapes: ``forward(*inputs)`` reads its inputs (N, C_i, H, W) as their concatenation, with
    sum C_i = 2ch (the unit's two halves: structure and recurrent features for the first unit,
    the previous unit's feature and the warped previous frame's feature for the others) and
    H, W multiples of 4 -> (N, ch, H, W).
    """

    def __init__(self, channels=26, num_blocks=8):
        super().__init__()
        ch = channels
        # encoder
        self.enc1 = conv(2 * ch, ch, 5)
        self.enc2 = conv(ch, ch, 3, stride=2)
        self.enc3 = conv(ch, 2 * ch, 3, stride=2)
        # bottleneck at 1/4 resolution
        self.blocks = make_layer(ResidualBlock, num_blocks, channels=2 * ch)
        self.blocks_end = conv(2 * ch, 2 * ch)
        # decoder
        self.dec1 = deconv(2 * ch, ch)
        self.dec2 = deconv(ch, ch)

    def forward(self, *inputs):
        f1 = self.enc1(*inputs)                               # (N, ch, H, W)
        f2 = self.enc2(f1)                                    # (N, ch, H/2, W/2)
        f3 = self.enc3(f2)                                    # (N, 2ch, H/4, W/4)
        x = self.blocks_end(self.blocks(f3), residual=f3)     # long skip
        x = self.dec1(x, residual=f2)                         # (N, ch, H/2, W/2)
        return self.dec2(x, residual=f1)                      # (N, ch, H, W)
