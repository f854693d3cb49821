"""Building blocks shared by the architectures (one place, reused, never copied)."""
import torch.nn as nn


def conv(in_channels, out_channels, kernel_size=3, stride=1, padding=None, relu=True):
    """Conv2d (with bias) optionally followed by ReLU; ``padding`` defaults to 'same' for odd k."""
    if padding is None:
        padding = kernel_size // 2
    layer = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=True)
    return nn.Sequential(layer, nn.ReLU(inplace=True)) if relu else layer


def deconv(in_channels, out_channels):
    """4x4 transposed conv, stride 2, pad 1 (exact x2 upsampling), followed by ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=True),
        nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """``x + ReLU(conv3x3(ReLU(conv3x3(x))))`` (ReLU before the add, as the reference).

    Args:
        channels (int): input = output channels.
    """

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels), conv(channels, channels))

    def forward(self, x):
        return x + self.body(x)


def make_layer(block, num_blocks, **kwargs):
    """``num_blocks`` instances of ``block(**kwargs)`` in a Sequential."""
    return nn.Sequential(*[block(**kwargs) for _ in range(num_blocks)])
