"""Direct CPU convolutions with fused bias, ReLU, residual add and input concatenation.

``csrc/conv_cpu/conv_cpu.cpp`` (the engine, ``mtu_toolkit._conv_cpu``) vectorises
convolutions over the output row (AVX-512 or AVX2, chosen at run time) instead of over output
channels as oneDNN does, so layers of 26 or 52 channels use every lane and NCHW tensors need no
reordering. It reads a list of inputs as one
concatenation (no ``cat`` is built) and adds a residual after the ReLU in the same pass.
Kernels: K x K convolutions (K = 3 or 5) with stride 1, 2 or 4, the 4x4 stride-2 transposed
convolution of the U-Nets' decoders, and for the stride-1 3x3 and 5x5 layers Winograd
F(4x4, KxK) (36 instead of 144, 64 instead of 400 multiply-adds per 4x4 output tile and
channel pair) or F(2x2, KxK); the transforms cost little once shared by 16 or more channels.

:class:`DirectConv2d` wraps one ``nn.Conv2d`` or ``nn.ConvTranspose2d`` for inference; where
the kernels do not apply (no engine, another CPU, layer, dtype or device, or autograd) it
runs :func:`conv2d_direct_reference`, the same computation in PyTorch. It is the ``kernel`` the
direct inference form installs on the network's layers (:func:`~mtu_toolkit.deploy.to_direct`).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import memory
from ..memory import KeptBuffers
from ..models.layers import apply_conv
from .conv_engine import conv_ext, direct_conv_isa

ext = conv_ext  # the engine's functions, as the tests and benchmarks call them


def conv2d_direct_reference(inputs, weight, bias=None, residual=None, relu=True, stride=1,
                            padding=None, transposed=False):
    """``[relu](conv(cat(inputs), weight, bias)) + [residual]`` in PyTorch.

    Args:
        inputs (list[Tensor]): (N, C_i, H, W) each, concatenated along channels.
        weight (Tensor): (Cout, sum C_i, K, K); transposed: (sum C_i, Cout, K, K).
        bias (Tensor | None): (Cout,).
        residual (Tensor | None): like the output, added after the ReLU.
        relu (bool): apply ReLU before the residual.
        stride (int): stride. padding (int | None): padding (default K // 2).
        transposed (bool): a transposed convolution (``conv_transpose2d``).

    Returns:
        Tensor: (N, Cout, OH, OW).
    """
    x = inputs[0] if len(inputs) == 1 else torch.cat(list(inputs), 1)
    padding = weight.shape[-1] // 2 if padding is None else padding
    conv = F.conv_transpose2d if transposed else F.conv2d
    out = conv(x, weight, bias, stride=stride, padding=padding)
    if relu:
        out = F.relu(out)
    return out if residual is None else out + residual


def _plane_contiguous(t):
    """``t`` if each sample is a dense NCHW block (any batch stride: window[:, i] is read in
    place), else a contiguous copy."""
    n, c, h, w = t.shape
    if t.stride(3) == 1 and t.stride(2) == w and t.stride(1) == h * w:
        return t
    return t.contiguous()




#: Winograd by default where the input or the output has this many channels (its input
#: transform is shared by the output channels, its output transform by the input channels)
#: and the input at least WINOGRAD_MIN_INPUTS (the products' depth); measured layer by layer
#: by ``benchmarks/conv_cpu.py`` (figures in ``docs/benchmarks.md``)
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_INPUTS = 3  # (the 3-channel frame input, base_conv, gains too)

#: kernel size -> Winograd output tile M of F(M x M, K x K) by default (F(4x4) differs from
#: the exact sum by up to ~6e-6 of the output's scale, F(2x2) and the direct sum by ~1e-6).
#: The 4x4 stride-2 transposed conv (key 'transposed') runs as a 3x3 conv of 4 Cout channels,
#: one per output pixel phase, by F(4x4, 3x3): 9 multiply-adds per input pixel and channel
#: pair against its direct kernel's 16 (0.58-0.73x the time, ``benchmarks/conv_cpu.py``).
WINOGRAD_TILE = {3: 4, 5: 4, 'transposed': 4}


def _winograd_tile(conv, winograd):
    """The Winograd output tile ``conv`` (for which the direct kernels apply) runs with, 0 for
    none: ``winograd`` 'auto' (:data:`WINOGRAD_TILE` where the layer has
    :data:`WINOGRAD_MIN_CHANNELS` and :data:`WINOGRAD_MIN_INPUTS`), True (where it can),
    False, or a tile, 2 or 4 (a transposed conv: 4 only)."""
    if winograd not in (True, False, 'auto', 2, 4):
        raise ValueError(f"winograd must be True, False, 'auto', 2 or 4, got {winograd!r}")
    k = conv.kernel_size[0]
    transposed = isinstance(conv, nn.ConvTranspose2d)
    key = 'transposed' if transposed else k
    tile = WINOGRAD_TILE.get(key, 0) if winograd in (True, 'auto') else int(winograd)
    stride = 2 if transposed else 1
    if (not tile or conv.stride[0] != stride
            or not conv_ext.conv_direct_supported(k, stride, transposed, winograd=tile)
            or transposed and not _packs_transposed_winograd()):
        return 0
    wide = (max(conv.in_channels, conv.out_channels) >= WINOGRAD_MIN_CHANNELS
            and conv.in_channels >= WINOGRAD_MIN_INPUTS)
    return tile if winograd != 'auto' or wide else 0


def _packs_transposed_winograd():
    """Whether the engine in use runs transposed convs by Winograd. Engines built before it
    (the old side of ``benchmarks/inference_cpu.py --baseline-conv-ext``) answered
    ``conv_direct_supported(4, 2, True, winograd=4)`` by their transposed kernel and refuse to
    pack such a weight: they run the layer as they did."""
    try:
        return conv_ext.conv_direct_pack(torch.zeros(1, 1, 4, 4), True, winograd=4).dim() == 4
    except RuntimeError:
        return False


def _kernel_applies(conv):
    """Whether the direct kernels implement ``conv`` (on this CPU)."""
    k = conv.kernel_size[0]
    transposed = isinstance(conv, nn.ConvTranspose2d)
    square = (conv.kernel_size == (k, k) and conv.stride[0] == conv.stride[1]
              and conv.padding[0] == conv.padding[1] and conv.dilation == (1, 1)
              and conv.groups == 1 and conv.padding_mode == 'zeros')
    if transposed:
        square = (square and k == 4 and conv.stride == (2, 2) and conv.padding == (1, 1)
                  and conv.output_padding == (0, 0))
    return (square and conv.weight.dtype == torch.float32 and bool(direct_conv_isa())
            and conv_ext.conv_direct_supported(k, conv.stride[0], transposed))


class DirectConv2d(nn.Module):
    """An ``nn.Conv2d`` or ``nn.ConvTranspose2d`` (+ ReLU) on the direct kernels, for CPU
    inference.

    ``forward(inputs, residual=None, sum_inputs=False, out=None)``: ``inputs`` a list of
    (N, C_i, H, W) tensors whose channels add up to the layer's input channels (read as their
    concatenation; with ``sum_inputs`` they all have the layer's input channels and are added
    first, into a buffer reused from call to call), ``residual`` (N, Cout, OH, OW) added after
    the ReLU. Returns (N, Cout, OH, OW), NCHW, written into ``out`` when given (a contiguous
    tensor that may be ``residual`` itself but no input; reusing buffers spares the page faults
    of fresh ones, see ``docs/benchmarks.md``).

    Args:
        conv (nn.Conv2d | nn.ConvTranspose2d): the layer; its weights are copied (and packed
            for the kernels) now, so build this after loading the checkpoint.
        relu (bool): apply ReLU (the ``conv(..., relu=True)`` layers of the network).
        reuse_output (bool): write every call's result into the same buffer (reallocated when
            the shape changes): for intermediate results that are dead by the next call.
        winograd (bool | str | int): run a stride-1 3x3 or 5x5 layer by Winograd
            F(M x M, KxK), and the 4x4 stride-2 transposed layer as a 3x3 conv of 4 Cout
            channels (its output pixel phases) by F(4x4, 3x3): 'auto' (default) with the tile
            M of :data:`WINOGRAD_TILE` where the layer has at least
            :data:`WINOGRAD_MIN_CHANNELS` input or output channels and
            :data:`WINOGRAD_MIN_INPUTS` inputs, True wherever it can, 2 or 4 with that tile
            (transposed: 4), False never. It rounds differently from the direct sum (within a
            few 1e-6 of the output's scale).
    """

    def __init__(self, conv, relu, reuse_output=False, winograd='auto'):
        super().__init__()
        self.relu = relu
        self.reuse_output = reuse_output
        self._kept = KeptBuffers()  # the reused output, the sum of the inputs (sum_inputs)
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        self.out_channels = conv.out_channels
        self.stride, self.padding = conv.stride[0], conv.padding[0]
        self.reference_layer = None
        # not persistent: a network in this form keeps the state-dict keys of its layers
        self.register_buffer('weight', conv.weight.detach().clone(), persistent=False)
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.register_buffer('bias', bias, persistent=False)
        applies = _kernel_applies(conv)
        self.isa = direct_conv_isa() if applies else ''
        self.winograd = _winograd_tile(conv, winograd) if applies else 0
        packed = (conv_ext.conv_direct_pack(self.weight, self.transposed, winograd=self.winograd)
                  if applies else None)
        self.register_buffer('packed', packed, persistent=False)
        if not applies:  # e.g. non-square: run the layer's own convolution (not registered:
            # for the network's bare Conv layers it is the layer whose kernel this is)
            self.__dict__['reference_layer'] = conv
        k = conv.kernel_size[0]
        kind = ('transposed ' if self.transposed else '') + ('winograd ' if self.winograd else '')
        self.profile_name = f'mtu::conv_direct {kind}{k}x{k}/{self.stride}'

    def uses_kernel(self, x):
        return bool(self.isa) and x.device.type == 'cpu' and x.dtype == torch.float32

    def forward(self, inputs, residual=None, sum_inputs=False, out=None):
        if sum_inputs and len(inputs) > 1:
            inputs = [self._summed(inputs)]
        tensors = list(inputs) + ([] if residual is None else [residual])
        if not self.uses_kernel(inputs[0]) or (torch.is_grad_enabled()
                                               and any(t.requires_grad for t in tensors)):
            result = self._reference(inputs, residual)
            return result if out is None else out.copy_(result)
        inputs = [_plane_contiguous(t) for t in inputs]
        residual = None if residual is None else _plane_contiguous(residual)
        if out is None:
            shape = self._output_shape(inputs[0])
            if self.reuse_output:
                out = self._reused_buffer(inputs[0], shape)
            elif memory.recyclable(shape, inputs[0].dtype):
                out = memory.recycled_empty(shape, inputs[0].dtype, inputs[0].device)
        # named in torch.profiler's traces (a pybind call is invisible to it otherwise)
        with torch.profiler.record_function(self.profile_name):
            return conv_ext.conv_direct(inputs, self.packed, self.bias, residual, self.out_channels,
                                   self.stride, self.padding, self.transposed, self.relu, out,
                                   winograd=self.winograd)

    def _summed(self, inputs):
        """inputs[0] + inputs[1] + ... (into the same buffer every call when no autograd): by
        the engine's ``sum_inputs`` where it applies (float32 CPU tensors of one shape, all
        contiguous; the same values as torch's adds, a large sum written without first reading
        its buffer from memory), else by torch."""
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
            return sum(inputs[1:], inputs[0])
        first = inputs[0]
        total = self._kept.get('sum', first.shape, first.dtype, first.device)
        # (an engine built before sum_inputs, as benchmarks/inference_cpu.py's baseline may
        # be, adds by torch as it did)
        sum_inputs = getattr(conv_ext, 'sum_inputs', None)
        if sum_inputs is not None and self.uses_kernel(first) and len(inputs) <= 8 and all(
                t.shape == first.shape and t.dtype == first.dtype and t.device == first.device
                and t.is_contiguous() for t in inputs):
            return sum_inputs(list(inputs), total)
        torch.add(first, inputs[1], out=total)
        for x in inputs[2:]:
            total.add_(x)
        return total

    def _output_shape(self, x):
        n, _, h, w = x.shape
        k = self.weight.shape[-1]
        return (n, self.out_channels) + tuple(
            conv_ext.conv_direct_output_size(size, k, self.stride, self.padding, self.transposed)
            for size in (h, w))

    def _reused_buffer(self, x, shape):
        return self._kept.get('out', shape, x.dtype, x.device)

    def _reference(self, inputs, residual):
        if self.reference_layer is not None:
            x = inputs[0] if len(inputs) == 1 else torch.cat(list(inputs), 1)
            out = apply_conv(self.reference_layer, x)
            out = F.relu(out) if self.relu else out
            return out if residual is None else out + residual
        return conv2d_direct_reference(inputs, self.weight, self.bias, residual, self.relu,
                                       self.stride, self.padding, self.transposed)

    def extra_repr(self):
        kind = (('transposed, ' if self.transposed else '')
                + (f'winograd F({self.winograd}x{self.winograd}), ' if self.winograd else ''))
        return (f'{kind}out_channels={self.out_channels}, kernel_size={self.weight.shape[-1]}, '
                f'stride={self.stride}, relu={self.relu}, kernel={self.isa or "reference"}')
