"""The multi-task detail network F^n: a small U-Net with residual blocks (MTU_NETWORK.md)."""
import torch.nn as nn

from ..layers import ResidualBlock, conv, deconv, make_layer


class DetailNet(nn.Module):
    """U-Net of one multi-task unit: 2ch -> ch at full resolution.

    Args:
        channels (int): base channels ``ch`` (26; 48 for the L variant).
        num_blocks (int): residual blocks at 1/4 resolution (8; 6 for the L variant).

    Shapes: input (N, 2ch, H, W) with H, W multiples of 4 -> output (N, ch, H, W).
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

    def forward(self, x):
        return self.after_enc1(self.enc1(x))

    def after_enc1(self, f1):
        """The network after its first convolution: (N, ch, H, W) -> (N, ch, H, W)."""
        f2 = self.enc2(f1)
        f3 = self.enc3(f2)
        x = self.blocks_end(self.blocks(f3)) + f3
        x = self.dec1(x) + f2
        return self.dec2(x) + f1
