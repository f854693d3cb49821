"""Inference forms of the MTU network, derived from the model's own layers.

The network's topology lives in :class:`~mtu_toolkit.models.MTUNet` and
:class:`~mtu_toolkit.models.backbones.DetailNet` alone. Their convolutions are layers with one
calling convention (``layer(*inputs, residual=None, sum_inputs=False)``, see
:mod:`mtu_toolkit.models.layers`); an inference form changes *how* each layer runs by installing
a kernel on it (RepVGG-style: one small function walks the modules and converts each layer),
never *what* the network computes:

* :func:`to_direct`: every layer on the toolkit's direct CPU kernels
  (:class:`~mtu_toolkit.deploy.direct_conv.DirectConv2d`): inputs read in place (no ``cat``),
  bias, ReLU and the residual add in the convolution's pass, the full-resolution results that
  die within a frame written into reused buffers;
* :func:`to_split`: the layers that read two inputs compute ``conv(cat(a, b))`` as
  ``conv(a, W_a) + conv(b, W_b)`` (:class:`SplitConv`), which oneDNN / ``torch.compile``
  fuse without building the full-resolution concatenation;
* :func:`freeze_units`: every detail network traced, frozen and passed through
  ``torch.jit.optimize_for_inference``.

The conversions act in place on a network in eval mode (copy it first; see
:func:`~mtu_toolkit.deploy.optimize_for_inference`); the state-dict keys do not change.
"""
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..apis.tiling import unit_radius
from ..models.layers import apply_conv, fused_layers
from .direct_conv import DirectConv2d

#: spatial size of the example input the detail networks are traced with (any size runs)
_TRACE_SIZE = 16


def to_direct(net, winograd='auto'):
    """Run ``net``'s own layers (an :class:`~mtu_toolkit.models.MTUNet`; the MC head keeps its
    own) on the direct CPU kernels, in place. ``winograd``: see
    :class:`~mtu_toolkit.deploy.direct_conv.DirectConv2d`. Returns ``net``.

    The layers listed by ``net.transient_layers()`` write into the same buffer every frame, and
    so does the MC head's warp where the head can (``reuse_warp_output``), so one converted
    network must not run frames from several threads at once. The detail networks write the
    residuals they no longer need over (``overwrite_residuals``). The head also normalises its
    motion features in one compiled pass, straight into the layout its argmax reads, where it
    can (``fast_normalize``).
    """
    transient = {id(layer) for layer in net.transient_layers()}
    for layer in fused_layers(net.inference_layers()):
        layer.set_kernel(DirectConv2d(layer.conv, layer.relu, winograd=winograd,
                                      reuse_output=id(layer) in transient))
    for module in net.modules():  # the detail networks write dead residuals over
        if hasattr(module, 'overwrite_residuals'):
            module.overwrite_residuals = True
    head = getattr(net, 'mc_head', None)
    if hasattr(head, 'reuse_warp_output'):
        head.reuse_warp_output = True
    if hasattr(head, 'fast_normalize'):
        head.fast_normalize = True
    return net


class SplitConv(nn.Module):
    """The kernel of :func:`to_split`: a layer's convolution with its weight split by input.

    ``forward(inputs, residual=None, sum_inputs=False)`` as the layer's own call; two inputs
    (a, b) give ``[relu](conv(a, W_a) + conv(b, W_b) + bias) + residual``, anything else runs
    the layer's convolution on the concatenation (the frames of the input window: 3 channels
    each, cheaper concatenated).

    Args:
        layer (FusedCallMixin): the network's layer (its convolution is shared, not copied).
    """

    def __init__(self, layer):
        super().__init__()
        # the layer's convolution, not registered (for a bare Conv layer it is the layer
        # itself, whose kernel this is)
        self.__dict__['conv'] = layer.conv
        self.relu = layer.relu

    def forward(self, inputs, residual=None, sum_inputs=False):
        conv = self.conv
        if len(inputs) == 2 and not sum_inputs and isinstance(conv, nn.Conv2d):
            # split at every call (two views): a cache of splits would be state that
            # torch.compile guards on, and a graph compiled before it was filled is compiled
            # again on the second frame
            w_a, w_b = conv.weight.split([x.shape[1] for x in inputs], dim=1)
            args = dict(stride=conv.stride, padding=conv.padding)
            out = F.conv2d(inputs[0], w_a, conv.bias, **args) + F.conv2d(inputs[1], w_b, **args)
        else:
            x = inputs[0] if len(inputs) == 1 else (
                sum(inputs[1:], inputs[0]) if sum_inputs else torch.cat(inputs, 1))
            out = apply_conv(conv, x)
        out = torch.relu(out) if self.relu else out
        return out if residual is None else out + residual


def to_split(net):
    """Compute every two-input layer of ``net`` as a sum of two convolutions (see
    :class:`SplitConv`), in place. Returns ``net``."""
    for layer in fused_layers(net.inference_layers()):
        layer.set_kernel(SplitConv(layer))
    return net


def freeze_unit(unit, in_channels):
    """Trace, freeze and optimise one detail network (its two inputs (N, in_channels / 2, H, W),
    any H, W)."""
    half = torch.zeros(1, in_channels // 2, _TRACE_SIZE, _TRACE_SIZE)
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.compile (the 'compile' mode), which
        # needs a compiler toolchain at run time; freezing works everywhere
        warnings.simplefilter('ignore', DeprecationWarning)
        traced = torch.jit.trace(unit.eval(), (half, half))
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


def freeze_units(net):
    """Replace every detail network of ``net`` by its frozen trace, in place. Returns ``net``.

    The traces hide the layers' geometry, so the units' receptive radius is kept on the net
    first (``net.unit_radius``, pixels; what ``apis.tiling.recommended_overlap`` reads)."""
    net.unit_radius = unit_radius(net.units[0])
    for i, unit in enumerate(net.units):
        net.units[i] = freeze_unit(unit, 2 * net.channels)
    return net
