"""Building blocks shared by the architectures (one place, reused, never copied).

Every convolution of the MTU network is one of two layer classes with one calling convention::

    y = layer(*inputs, residual=None, sum_inputs=False, out=None)
      = [ReLU](conv(cat(inputs)))  + residual      (sum_inputs: conv(inputs[0] + inputs[1] ...))

``inputs`` are (N, C_i, H, W) tensors read as their concatenation along channels (or their
sum), ``residual`` is added after the activation, and ``y`` is written into ``out`` when given
(a tensor of y's shape that may be ``residual`` itself, never an input: the inference forms
write residuals that are dead afterwards over). The network's forward code says *what* is
computed once, in these terms; how a layer runs is the layer's business. In training it runs
the PyTorch modules it holds (the ``cat`` and the add are plain tensor ops). An inference form
(see :mod:`mtu_toolkit.deploy`) installs a ``kernel`` on the layer, a module with
``kernel(inputs, residual, sum_inputs)`` (and ``out=`` where its form passes one) that computes
the same thing its own way (e.g. the direct CPU kernels read the inputs in place and add the
residual in the convolution's pass), the way RepVGG's blocks switch to their deploy form. The
state-dict keys do not change: :class:`ConvAct` is keyed like ``nn.Sequential(conv, ReLU)``
(``<name>.0.weight``), :class:`Conv` like ``nn.Conv2d`` (``<name>.weight``).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def apply_conv(conv, x):
    """``conv``'s own convolution of ``x`` (an ``nn.Conv2d`` or ``nn.ConvTranspose2d``, also a
    layer of this module: its PyTorch computation, never an installed kernel)."""
    if isinstance(conv, nn.ConvTranspose2d):
        return F.conv_transpose2d(x, conv.weight, conv.bias, conv.stride, conv.padding,
                                  conv.output_padding, conv.groups, conv.dilation)
    return nn.Conv2d._conv_forward(conv, x, conv.weight, conv.bias)


def _combine(inputs, sum_inputs):
    if len(inputs) == 1:
        return inputs[0]
    if sum_inputs:
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out
    return torch.cat(inputs, 1)


class FusedCallMixin:
    """The calling convention of the network's conv layers (see the module docstring).

    Subclasses provide :attr:`conv` (the ``nn.Conv2d`` / ``nn.ConvTranspose2d``), :attr:`relu`
    and :meth:`eager`, the layer's own computation on one tensor.
    """

    def forward(self, *inputs, residual=None, sum_inputs=False, out=None):
        kernel = self._modules.get('kernel')  # the installed inference kernel, if any
        if kernel is not None:
            if out is None:
                return kernel(list(inputs), residual, sum_inputs)
            return kernel(list(inputs), residual, sum_inputs, out=out)
        y = self.eager(_combine(inputs, sum_inputs))
        y = y if residual is None else y + residual
        return y if out is None else out.copy_(y)

    def set_kernel(self, kernel):
        """Run the layer by ``kernel`` (a module ``kernel(inputs, residual, sum_inputs)``)
        from now on; None goes back to the PyTorch modules."""
        if kernel is None:
            self._modules.pop('kernel', None)
        else:
            self.add_module('kernel', kernel)


class ConvAct(FusedCallMixin, nn.Module):
    """A convolution followed by ReLU (keys ``0.weight``, ``0.bias`` as ``nn.Sequential``).

    Args:
        conv (nn.Conv2d | nn.ConvTranspose2d): the convolution.
        relu (bool): apply ReLU (in place) after it. Default True.
    """

    def __init__(self, conv, relu=True):
        super().__init__()
        self.add_module('0', conv)
        self.relu = relu

    @property
    def conv(self):
        return self._modules['0']

    def __getitem__(self, index):  # layer[0] is the convolution, as in nn.Sequential
        if index not in (0, -1):
            raise IndexError(f'ConvAct holds one convolution (index 0), got {index}')
        return self.conv

    def eager(self, x):
        out = self.conv(x)  # a module call: hooks and FLOP counters see the convolution
        return torch.relu_(out) if self.relu else out


class Conv(FusedCallMixin, nn.Conv2d):
    """An ``nn.Conv2d`` (no activation) with the calling convention of :class:`ConvAct`."""

    relu = False

    @property
    def conv(self):
        return self

    def eager(self, x):
        return apply_conv(self, x)


def conv(in_channels, out_channels, kernel_size=3, stride=1, padding=None, relu=True):
    """A KxK convolution (with bias), optionally followed by ReLU; ``padding`` defaults to
    'same' for odd K. Returns :class:`ConvAct` (with ReLU) or :class:`Conv` (without)."""
    if padding is None:
        padding = kernel_size // 2
    if not relu:
        return Conv(in_channels, out_channels, kernel_size, stride, padding, bias=True)
    return ConvAct(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=True))


def deconv(in_channels, out_channels):
    """4x4 transposed conv, stride 2, pad 1 (exact x2 upsampling), followed by ReLU."""
    return ConvAct(nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=True))


class ResidualBlock(nn.Module):
    """``x + ReLU(conv3x3(ReLU(conv3x3(x))))`` (ReLU before the add, as the reference).

    Args:
        channels (int): input = output channels.

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels), conv(channels, channels))

    def forward(self, x, overwrite_input=False):
        """x (N, C, H, W) -> (N, C, H, W); with ``overwrite_input`` (inference forms, where
        nothing reads ``x`` afterwards) the result is written over ``x``."""
        return self.body[1](self.body[0](x), residual=x, out=x if overwrite_input else None)


def make_layer(block, num_blocks, **kwargs):
    """``num_blocks`` instances of ``block(**kwargs)`` in a Sequential."""
    return nn.Sequential(*[block(**kwargs) for _ in range(num_blocks)])


def fused_layers(module):
    """Every layer with the fused calling convention inside ``module`` (in module order)."""
    return [m for m in module.modules() if isinstance(m, FusedCallMixin)]
