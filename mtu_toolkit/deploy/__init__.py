"""Deployment: the inference forms of the network and its export, derived from the model.

Nothing here re-states the network: :mod:`~mtu_toolkit.deploy.forms` converts the model's own
layers (the direct CPU kernels, split two-input convolutions, frozen units),
:func:`optimize_for_inference` picks a form for a restorer, :mod:`~mtu_toolkit.deploy.export`
traces one frame's step to TorchScript / ONNX. :class:`DirectConv2d` is the Python face of the
CPU convolution engine (``csrc/conv_cpu``, ``mtu_toolkit._conv_cpu``).
"""
from .conv_engine import direct_conv_broadcasts, direct_conv_isa, direct_conv_prefetch
from .direct_conv import DirectConv2d, conv2d_direct_reference
from .export import export_onnx, export_torchscript, run_step_module
from .forms import SplitConv, freeze_units, to_direct, to_split
from .optimize import MODES, add_model_arguments, default_mode, optimize_for_inference, tool_model

__all__ = [
    'direct_conv_broadcasts', 'direct_conv_isa', 'direct_conv_prefetch', 'DirectConv2d',
    'conv2d_direct_reference', 'export_onnx', 'export_torchscript', 'run_step_module',
    'SplitConv', 'freeze_units', 'to_direct', 'to_split', 'MODES', 'add_model_arguments',
    'default_mode', 'optimize_for_inference', 'tool_model'
]
