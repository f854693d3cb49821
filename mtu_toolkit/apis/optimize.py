"""Faster inference without changing the network: direct kernels, compiled or frozen units.

The detail networks (U-Nets, >95% of the FLOPs) are pure convolution graphs. Three CPU modes:

* ``'direct'`` (the default on CPUs with AVX-512 or AVX2): the network
  rearranged without its full-resolution concatenations
  (:class:`~mtu_toolkit.apis.fused_mtu.FusedMTUNet`) on the toolkit's own convolution kernels
  (:mod:`mtu_toolkit.ops.conv_direct`, compiled with the extension): NCHW, vectorised over the
  image row so the 26/52-channel layers fill every lane, the stride-1 layers by Winograd
  F(4x4, KxK), ReLUs, residual adds and concatenations fused into the convolutions. Needs
  nothing at run time. The fastest CPU path
  (``docs/benchmarks.md``);
* ``'compile'`` (``compile=True``): the same rearranged network channels-last, each unit with
  the convolutions around it compiled by ``torch.compile`` (inductor, weights frozen as
  constants: prepacked oneDNN convolutions with fused ReLU/adds). It needs a C++ compiler at run
  time and compiles on the first frame of each size (~15-20 s per unit on 2 cores); it falls
  back to the eager stage with a warning if compiling fails;
* ``'frozen'`` (the default on other CPUs): each detail network traced, frozen and passed through
  ``torch.jit.optimize_for_inference`` (oneDNN blocked layout through the U-Net).

The motion compensation (the fused ``correlation_argmax`` op and the warp) stays eager. Results
match the eager model to float rounding (tested).
"""
import copy
import warnings

import torch

from ..models.backbones.mtu_net import MTUNet
from ..ops.conv_direct import direct_conv_isa
from .fused_mtu import FusedMTUNet
from .init_restorer import model_device

#: the CPU modes of :func:`optimize_for_inference`
MODES = ('direct', 'compile', 'frozen')

#: channels of the example input the units are traced with (spatial size does not matter)
_TRACE_SIZE = 16


def freeze_unit(unit, in_channels):
    """Trace, freeze and optimise one detail network (input (N, in_channels, H, W), any H, W)."""
    example = torch.zeros(1, in_channels, _TRACE_SIZE, _TRACE_SIZE)
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.compile (the ``compile=True`` path),
        # which needs a compiler toolchain at run time; freezing works everywhere
        warnings.simplefilter('ignore', DeprecationWarning)
        traced = torch.jit.trace(unit.eval(), example)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


class CompiledModule(torch.nn.Module):
    """A module (a stage of the fused network) compiled by ``torch.compile`` (inductor,
    frozen weights), falling back to the eager module with one warning if compiling fails
    (e.g. no C++ compiler)."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self._compiled = torch.compile(module, dynamic=False)

    def forward(self, *args):
        if self._compiled is not None:
            # freezing (weights as constants: prepacked oneDNN convolutions with fused ReLU /
            # adds) is read when a frame size compiles; patched per call, not process-wide
            # (torch.compile's ``options`` do not reach it)
            from torch._inductor import config as inductor_config
            try:
                with inductor_config.patch(freezing=True):
                    return self._compiled(*args)
            except Exception as e:  # noqa: BLE001 - the eager module gives the same result
                warnings.warn(f'torch.compile of {type(self.module).__name__} failed '
                              f'({type(e).__name__}: {str(e)[:200]}); running it eager')
                self._compiled = None
        return self.module(*args)


def default_mode():
    """``'direct'`` where the direct kernels run (CPUs with AVX-512, or AVX2 and FMA), else
    ``'frozen'``.

    The AVX2 kernels, forced on an AVX-512 Xeon, beat oneDNN's AVX-512 convolutions there
    (MTU2 at 720p: 1.82x against eager's 2.45x of the conv-FLOP floor, ``docs/benchmarks.md``);
    on an AVX2-only CPU oneDNN drops to 8 lanes as well.
    """
    return 'direct' if direct_conv_isa() else 'frozen'


def optimize_for_inference(restorer, compile=False, mode=None, winograd='auto'):
    """A copy of ``restorer`` for fast inference on its device (CPU float32: see module doc).

    Args:
        restorer (MTURestorer): an eval-mode restorer.
        compile (bool): same as ``mode='compile'``.
        mode (str | None): CPU mode, one of :data:`MODES`; default :func:`default_mode`
            (``'compile'`` with ``compile=True``). ``'direct'`` and ``'compile'`` rearrange an
            MTUNet; another backbone is returned as it is, with a warning.
        winograd (bool | str | int): ``'direct'`` mode: which stride-1 layers run Winograd
            and with which tile (see :class:`~mtu_toolkit.ops.DirectConv2d`; False: none, to
            compare).

    On CUDA, or with half-precision autocast, the model is returned as it is (cuDNN picks its
    own algorithms; ``torch.backends.cudnn.benchmark`` is switched on). The copy's
    ``state_dict`` keys differ from the checkpoint's: use it for inference only.
    """
    if mode is None:
        mode = 'compile' if compile else default_mode()
    elif compile and mode != 'compile':
        raise ValueError(f'compile=True contradicts mode={mode!r}')
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    device = model_device(restorer)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
        return restorer
    if device.type != 'cpu' or restorer.infer_dtype is not None:
        return restorer
    fast = copy.deepcopy(restorer).eval()
    units = getattr(fast.backbone, 'units', None)
    if units is None:
        return restorer
    if mode in ('direct', 'compile'):
        if not isinstance(fast.backbone, MTUNet):
            warnings.warn(f'mode={mode!r} rearranges an MTUNet; {type(fast.backbone).__name__} '
                          'is run as it is')
            return restorer
        if mode == 'direct':
            if not direct_conv_isa():
                warnings.warn('the direct convolution kernels do not run here (no compiled '
                              'extension, or a CPU without AVX2); they fall back to PyTorch')
            fast.backbone = FusedMTUNet(fast.backbone, direct=True, winograd=winograd)
            return fast
        fast.backbone = FusedMTUNet(fast.backbone.to(memory_format=torch.channels_last))
        stages = fast.backbone.stages
        for i, stage in enumerate(stages):
            stages[i] = CompiledModule(stage)
        return fast
    in_channels = 2 * fast.backbone.channels
    for i, unit in enumerate(units):
        units[i] = freeze_unit(unit, in_channels)
    return fast


def tool_model(restorer, compile=False, eager=False):
    """The model the tools run: the compiled network with ``compile``, the restorer as it is
    with ``eager`` (or where :func:`default_mode` is not 'direct': the frozen units are slower
    than eager on a quiet CPU), else the direct kernels (CPU) / cuDNN autotuning (CUDA)."""
    if compile and eager:
        raise ValueError('--compile and --eager exclude each other')
    if compile:
        return optimize_for_inference(restorer, mode='compile')
    if eager:
        return restorer
    device = model_device(restorer)
    if device.type == 'cpu' and default_mode() != 'direct':
        return restorer
    with warnings.catch_warnings():  # a non-MTUNet backbone simply runs as it is
        warnings.simplefilter('ignore', UserWarning)
        return optimize_for_inference(restorer, mode='direct')


def add_model_arguments(parser, verb):
    """The tools' ``--compile`` / ``--eager`` choice of CPU model (see :func:`tool_model`);
    ``verb`` says what the tool does with it ('run', 'time')."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--compile', action='store_true',
                       help=f'CPU: {verb} the concatenation-free network compiled by '
                       'torch.compile (needs a C++ compiler; compiles on the first frame, '
                       '~20 s per unit)')
    group.add_argument('--eager', action='store_true',
                       help=f'CPU: {verb} the PyTorch model as it is, not the direct kernels')
