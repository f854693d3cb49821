"""Loading of the CPU convolution engine, ``mtu_toolkit._conv_cpu`` (built from
``csrc/conv_cpu/`` at install, separately from the motion-compensation ops).

Import never fails: without the engine (not built, a CPU without AVX2, ``MTU_SKIP_EXT=1``)
:data:`conv_ext` is None, :func:`direct_conv_isa` is ``''`` and the direct layers run their
PyTorch references (:func:`~mtu_toolkit.deploy.direct_conv.conv2d_direct_reference`); on a
CPU with AVX2 or AVX-512, where the engine's kernels would run, one
:class:`~mtu_toolkit.ops.extension.ExtensionFallbackWarning` says why it is missing.
"""
import torch

from ..ops.extension import import_extension, skip_requested, warn_fallback

#: the compiled engine module, or None
conv_ext, CONV_FALLBACK_REASON = import_extension('mtu_toolkit._conv_cpu')

if conv_ext is None and not skip_requested() \
        and torch.backends.cpu.get_cpu_capability() in ('AVX2', 'AVX512'):
    # (on this CPU the engine's kernels would run: the fallback costs about half the speed)
    warn_fallback('mtu_toolkit.deploy: the CPU convolution kernels', CONV_FALLBACK_REASON,
                  "the CPU inference runs PyTorch's convolutions (correct, about half as fast)")


def direct_conv_isa():
    """The instruction set the direct kernels use on this CPU: 'avx512', 'avx2' or '' (none,
    or the engine is not built)."""
    return conv_ext.conv_direct_isa() if conv_ext is not None else ''


def direct_conv_broadcasts():
    """How the AVX-512 kernels of 10 to 13 output channels a block broadcast their weights on
    this CPU: 'embedded' (by each multiply-add; Intel CPUs), 'registers' (once a weight; AMD
    CPUs: faster there) or '' (no AVX-512 kernels). The outputs are the same bit for bit."""
    return conv_ext.conv_direct_broadcasts() if direct_conv_isa() == 'avx512' else ''


def direct_conv_prefetch():
    """Where the direct kernels fetch their next input rows and output lines ahead of use:
    'l1' (the default on every CPU: on an AMD Zen 5, frames took 0.98-0.99x the time of L2),
    'l2' (only into L2; set by ``conv_ext.conv_direct_use_prefetch('l2')``) or '' (the engine
    does not run here). The outputs are the same bit for bit."""
    return conv_ext.conv_direct_prefetch() if direct_conv_isa() else ''
