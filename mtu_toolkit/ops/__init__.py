"""Motion-compensation ops: cost volume, fused correlation-argmax, displacement warp, and the
features' normalisation for the cosine correlation (also straight into the argmax's layout).

The compiled extension (``csrc/`` -> ``mtu_toolkit._ext``) provides the kernels; the
``*_reference`` functions are their pure-PyTorch twins, used by the tests and as the fallback
(announced by one :class:`ExtensionFallbackWarning`) when the extension is missing.
``EXT_AVAILABLE`` tells which is in use. While a trace records them (TorchScript, ONNX) the ops
run their references, so models built on them export as they are. (The CPU convolution engine
is a deployment component: :mod:`mtu_toolkit.deploy`.)
"""
from .extension import (EXT_AVAILABLE, EXT_WITH_CUDA, FALLBACK_REASON,
                        ExtensionFallbackWarning)
from .functions import (MatchingFeatures, correlation, correlation_argmax, matching_features,
                        matching_shape, normalize_features, tracing, uses_extension,
                        warp_by_displacement)
from .reference import (correlation_argmax_reference, correlation_reference,
                        normalize_features_reference, smooth_cost_volume,
                        volume_argmax_to_displacement, warp_by_displacement_reference)

__all__ = [
    'correlation', 'correlation_argmax', 'warp_by_displacement', 'normalize_features',
    'matching_features', 'matching_shape', 'MatchingFeatures',
    'correlation_reference', 'correlation_argmax_reference', 'warp_by_displacement_reference',
    'normalize_features_reference', 'smooth_cost_volume',
    'volume_argmax_to_displacement', 'EXT_AVAILABLE', 'EXT_WITH_CUDA', 'FALLBACK_REASON',
    'ExtensionFallbackWarning', 'uses_extension', 'tracing'
]
