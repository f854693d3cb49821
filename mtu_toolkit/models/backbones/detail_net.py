"""The multi-task detail network F^n: a small U-Net with residual blocks (``docs/network.md``)."""
import torch
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

    ``overwrite_residuals`` (attribute, default False; the direct inference form sets it):
    without autograd, a layer whose residual input nothing reads afterwards writes its result
    over it (every residual block but the first, whose input is the long skip's, then the
    long skip and ``dec1``): the same values, and one feature less in the cache (at 720p a
    12-24 MB tensor per layer, which otherwise can leave the last-level cache and be read
    back from memory; figures in ``docs/benchmarks.md``). The unit's own output is never
    written over anything.
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
        self.overwrite_residuals = False

    def forward(self, *inputs):
        over = self.overwrite_residuals and not torch.is_grad_enabled()
        f1 = self.enc1(*inputs)                               # (N, ch, H, W)
        f2 = self.enc2(f1)                                    # (N, ch, H/2, W/2)
        f3 = self.enc3(f2)                                    # (N, 2ch, H/4, W/4)
        x = f3
        for i, block in enumerate(self.blocks):
            x = block(x, overwrite_input=over and i > 0)
        # the long skip (with no blocks x is f3 itself, the input: then not overwritten)
        x = self.blocks_end(x, residual=f3, out=f3 if over and x is not f3 else None)
        x = self.dec1(x, residual=f2, out=f2 if over else None)  # (N, ch, H/2, W/2)
        return self.dec2(x, residual=f1)                      # (N, ch, H, W)
