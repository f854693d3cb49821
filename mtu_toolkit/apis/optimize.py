"""Faster inference without changing the network: frozen, fused detail networks on the CPU.

The detail networks (U-Nets, >95% of the FLOPs) are pure convolution graphs. On the CPU each one
is traced, frozen and passed through ``torch.jit.optimize_for_inference``, which keeps the
activations in oneDNN's blocked layout through the U-Net and fuses the ReLUs and the residual
adds into the convolutions. Its transposed convs are not converted (they fall back to dense
layout with copies), so on a quiet CPU this is on par with the eager model; it is much faster
when other jobs share the cores (fewer OpenMP parallel regions to stall on). See
``docs/benchmarks.md`` for the measured breakdown. The motion compensation (the fused
``correlation_argmax`` op and the warp) and the small input/output convolutions stay eager.
Results match the eager model to float rounding (checked in ``tests/test_apis.py``).
"""
import copy
import warnings

import torch

#: channels of the example input the units are traced with (spatial size does not matter)
_TRACE_SIZE = 16


def freeze_unit(unit, in_channels):
    """Trace, freeze and optimise one detail network (input (N, in_channels, H, W), any H, W)."""
    example = torch.zeros(1, in_channels, _TRACE_SIZE, _TRACE_SIZE)
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.compile, which needs a compiler
        # toolchain at run time; freezing works everywhere and is what fuses oneDNN here
        warnings.simplefilter('ignore', DeprecationWarning)
        traced = torch.jit.trace(unit.eval(), example)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


def optimize_for_inference(restorer):
    """A copy of ``restorer`` for fast inference on its device (float32 CPU: frozen units).

    On CUDA, or with half-precision autocast, the model is returned as it is (cuDNN picks its
    own algorithms; ``torch.backends.cudnn.benchmark`` is switched on). The copy's
    ``state_dict`` no longer matches the checkpoint's: use it for inference only.
    """
    device = next(restorer.parameters()).device
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
        return restorer
    if device.type != 'cpu' or restorer.infer_dtype is not None:
        return restorer
    fast = copy.deepcopy(restorer).eval()
    backbone = fast.backbone
    units = getattr(backbone, 'units', None)
    if units is None:
        return restorer
    in_channels = 2 * backbone.channels
    for i, unit in enumerate(units):
        units[i] = freeze_unit(unit, in_channels)
    return fast
