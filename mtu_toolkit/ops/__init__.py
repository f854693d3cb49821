"""Motion-compensation ops: cost volume, fused correlation-argmax and displacement warp.

The compiled extension (``csrc/``) provides the fast kernels; the ``*_reference`` functions are
their pure-PyTorch twins. (Dispatch to the extension is added by the csrc issue.)
"""
from .reference import (correlation_argmax_reference, correlation_reference,
                        smooth_cost_volume, volume_argmax_to_displacement,
                        warp_by_displacement_reference)

correlation = correlation_reference
correlation_argmax = correlation_argmax_reference
warp_by_displacement = warp_by_displacement_reference

__all__ = [
    'correlation', 'correlation_argmax', 'warp_by_displacement', 'correlation_reference',
    'correlation_argmax_reference', 'warp_by_displacement_reference', 'smooth_cost_volume',
    'volume_argmax_to_displacement'
]
