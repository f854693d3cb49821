"""Faster inference without changing the network: direct kernels, compiled or frozen units.

The detail networks (U-Nets, >95% of the FLOPs) are pure convolution graphs. Three CPU modes,
each an inference form of :mod:`mtu_toolkit.deploy.forms` on a copy of the model:

* ``'direct'`` (the default on CPUs with AVX-512 or AVX2): every layer on the toolkit's own
  convolution kernels (:func:`~mtu_toolkit.deploy.to_direct`; the engine is compiled with the
  package): NCHW, vectorised over the image row so the 26/52-channel layers fill every lane,
  the stride-1 layers by Winograd F(4x4, KxK), ReLUs, residual adds and concatenations fused
  into the convolutions. Needs nothing at run time. The fastest CPU path
  (``docs/benchmarks.md``);
* ``'compile'`` (``compile=True``): the two-input layers split by input
  (:func:`~mtu_toolkit.deploy.to_split`), channels-last, each detail network compiled by
  ``torch.compile`` (inductor, weights frozen as constants: prepacked oneDNN convolutions with
  fused ReLU / adds). It needs a C++ compiler at run time and compiles on the first frame of
  each size (up to 64 sizes; later ones run eager, with a warning); it falls back to the
  eager unit with a warning if compiling fails;
* ``'frozen'`` (the default on other CPUs): each detail network traced, frozen and passed through
  ``torch.jit.optimize_for_inference`` (oneDNN blocked layout through the U-Net).

The motion compensation (the fused ``correlation_argmax`` op and the warp) stays eager. Results
match the eager model to float rounding (tested), except at near-ties of the matching: where two
displacements score within float rounding of each other (flat areas: letterbox bands, sky, a
plain wall), features that differ by rounding can pick the other one, which changes the frame
there (up to ~1e-3 on [0, 1], a few 8-bit values, on a letterboxed clip; docs/benchmarks.md).
"""
import copy
import warnings

import torch

from ..apis.init_restorer import model_device
from ..models.backbones.mtu_net import MTUNet
from .conv_engine import direct_conv_isa
from .forms import freeze_units, to_direct, to_split

#: the CPU modes of :func:`optimize_for_inference`
MODES = ('direct', 'compile', 'frozen')


class CompiledModule(torch.nn.Module):
    """A module (a detail network) compiled by ``torch.compile`` (inductor, frozen weights),
    falling back to the eager module with one warning if compiling fails (e.g. no C++
    compiler). It compiles once per input shape, for up to :attr:`MAX_SHAPES` shapes (torch's
    own limit, 8, would silently leave every later frame size uncompiled); past them, a new
    shape runs eager, with one warning."""

    #: input shapes compiled at most (each costs a compilation and its frozen weights)
    MAX_SHAPES = 64

    def __init__(self, module):
        super().__init__()
        self.module = module
        self._compiled = torch.compile(module, dynamic=False)
        self._shapes, self._eager_shapes = set(), set()

    def forward(self, *args):
        shape = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
        if self._compiled is not None and (shape in self._shapes
                                           or len(self._shapes) < self.MAX_SHAPES):
            self._shapes.add(shape)
            # freezing (weights as constants: prepacked oneDNN convolutions with fused ReLU /
            # adds) is read when a frame size compiles; patched per call, not process-wide
            # (torch.compile's ``options`` do not reach it)
            from torch._inductor import config as inductor_config
            limits = _unlimited_recompiles()
            try:
                with inductor_config.patch(freezing=True), limits:
                    return self._compiled(*args)
            except Exception as e:  # noqa: BLE001 - the eager module gives the same result
                warnings.warn(f'torch.compile of {type(self.module).__name__} failed '
                              f'({type(e).__name__}: {str(e)[:200]}); running it eager')
                self._compiled = None
        elif self._compiled is not None and shape not in self._eager_shapes:
            self._eager_shapes.add(shape)
            warnings.warn(f'{type(self.module).__name__} was compiled for {self.MAX_SHAPES} '
                          'input shapes (frame sizes), the most it keeps: this new one runs '
                          'eager')
        return self.module(*args)


def _unlimited_recompiles():
    """A context lifting torch's recompile limits, which count the entries of every unit of
    the network together (:attr:`CompiledModule.MAX_SHAPES` per unit is the bound). The names
    are those of torch 2.7 on, ``cache_size_limit`` before."""
    from torch._dynamo import config
    new = hasattr(config, 'recompile_limit')
    return config.patch({('recompile_limit' if new else 'cache_size_limit'): 1 << 16,
                         ('accumulated_recompile_limit' if new
                          else 'accumulated_cache_size_limit'): 1 << 16})


def default_mode():
    """``'direct'`` where the direct kernels run (CPUs with AVX-512, or AVX2 and FMA), else
    ``'frozen'``.

    The AVX2 kernels, forced on an AVX-512 CPU, beat oneDNN's AVX-512 convolutions there
    (``docs/benchmarks.md``); on an AVX2-only CPU oneDNN drops to 8 lanes as well.
    """
    return 'direct' if direct_conv_isa() else 'frozen'


def optimize_for_inference(restorer, compile=False, mode=None, winograd='auto'):
    """A copy of ``restorer`` for fast inference on its device (CPU float32: see module doc).

    Args:
        restorer (MTURestorer): an eval-mode restorer.
        compile (bool): same as ``mode='compile'``.
        mode (str | None): CPU mode, one of :data:`MODES`; default :func:`default_mode`
            (``'compile'`` with ``compile=True``). ``'direct'`` and ``'compile'`` convert an
            MTUNet; another backbone is returned as it is, with a warning.
        winograd (bool | str | int): ``'direct'`` mode: which stride-1 layers run Winograd
            and with which tile (see :class:`~mtu_toolkit.deploy.DirectConv2d`; False: none,
            to compare).

    On CUDA, or with bfloat16 autocast, the model is returned as it is (cuDNN picks its own
    algorithms; ``torch.backends.cudnn.benchmark`` is switched on); ``infer_dtype='float16'``
    runs in float32 on the CPU, so it gets the fast copy (:meth:`MTURestorer.autocast_dtype`).
    The copy is for inference only. Its layers run weights copied (and packed) when it was
    made, so it refuses ``load_state_dict`` in one line: load new weights into ``restorer`` and
    optimise it again. Its ``state_dict`` is not a checkpoint (the frozen units keep none of
    their layers' keys): save the restorer's. Its kept buffers belong to the first thread that
    runs it; another thread gets fresh ones (correct, slower): give each thread its own copy
    (``copy.deepcopy``) to run threads side by side at full speed.
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
    if device.type != 'cpu' or restorer.autocast_dtype(device) is not None:
        return restorer
    fast = copy.deepcopy(restorer).eval()
    net = fast.backbone
    if getattr(net, 'units', None) is None:
        return restorer
    if mode in ('direct', 'compile') and not isinstance(net, MTUNet):
        warnings.warn(f'mode={mode!r} converts an MTUNet; {type(net).__name__} is run as it is')
        return restorer
    if mode == 'direct':
        if not direct_conv_isa():
            warnings.warn('the direct convolution kernels do not run here (no compiled '
                          'engine, or a CPU without AVX2); they fall back to PyTorch')
        to_direct(net, winograd=winograd)
    elif mode == 'compile':
        to_split(net.to(memory_format=torch.channels_last))
        for i, unit in enumerate(net.units):
            net.units[i] = CompiledModule(unit)
    else:
        freeze_units(net)
    fast.register_load_state_dict_pre_hook(_refuse_loading)
    return fast


def _refuse_loading(module, *args):
    """``load_state_dict`` into a fast copy: the weights would go to state-dict entries its
    layers no longer read (it said 'All keys matched' and ran the old weights)."""
    raise RuntimeError('this is a copy made by optimize_for_inference, whose layers run the '
                       'weights it was made with: load the weights into the restorer, then '
                       'call optimize_for_inference again')


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
                       'torch.compile (needs a C++ compiler; compiles on the first frame)')
    group.add_argument('--eager', action='store_true',
                       help=f'CPU: {verb} the PyTorch model as it is, not the direct kernels')
