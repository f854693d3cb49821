"""Export the inference network as a single-frame step: TorchScript, and ONNX.

The exported step is the recurrent network of one frame with its state made explicit::

    out, restored, feat, motion = step(window, restored, feat, motion)   # frames t >= 1
    out, restored, feat, motion = step.first(window)                     # frame 0 (no state)

``window`` is (1, 5, 3, H, W) in [0, 1] (frames t-2..t+2, clamped at the ends), ``out`` the
restored frame (1, 3, H, W) in [0, 1], and ``restored`` (padded frame), ``feat`` and ``motion``
(tuple of motion features) the state to feed to the next step. Any MC head whose ``estimate``
and ``warp`` are traceable exports (see :class:`~mtu_toolkit.models.mc_heads.BaseMCHead`): the
ops of :mod:`mtu_toolkit.ops` run their pure-PyTorch twins while tracing (the same results
but at near-ties of the matching, as for :func:`~mtu_toolkit.deploy.optimize_for_inference`;
the fused argmax materialises the cost volume there). Tracing fixes the frame size: export one per
size.
"""
import functools
import io
import os.path as osp
import warnings
from contextlib import contextmanager

import torch
import torch.nn as nn

from ..apis.init_restorer import model_device
from ..fileio import check_output_file, write_atomically
from ..models.backbones.mtu_net import MTUState
from ..models.window import WINDOW, clamped_indices


@contextmanager
def quiet_tracing():
    """Silence the tracer's warnings that shapes become constants (intended: one export per
    frame size); the ops switch to their traceable references by themselves."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        yield


#: the start of the error of a traced step given frames of another size
SIZE_ERROR = 'this step was traced for'


def _check_frame_size(window: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``window``, if its frames are ``height`` x ``width``; a ValueError otherwise."""
    if window.shape[-2] != height or window.shape[-1] != width:
        raise ValueError('this step was traced for {}x{} frames, got {}x{}: export one for that '
                         'size (tools/export.py --size {}x{})'.format(
                             width, height, window.shape[-1], window.shape[-2],
                             window.shape[-1], window.shape[-2]))
    return window


@functools.lru_cache(maxsize=None)
def scripted_size_check():
    """:func:`_check_frame_size` as a TorchScript function: called while tracing, it stays in
    the traced graph as a call (with its branch), so the saved step checks every window's size
    (a plain Python check would run once, at tracing). Compiled on first use."""
    with warnings.catch_warnings():  # (torch.jit.script's deprecation: tracing needs it)
        warnings.simplefilter('ignore', DeprecationWarning)
        return torch.jit.script(_check_frame_size)


class FrameStep(nn.Module):
    """The restorer's single-frame inference with the recurrent state as plain tensors.

    ``frame_size`` (height, width), when set, is checked on every window of a TorchScript trace
    (:func:`export_torchscript`): tracing fixes the frame size, and another size would give
    wrong frames or an interpreter traceback.
    """

    def __init__(self, restorer):
        super().__init__()
        self.restorer = restorer
        self.num_matching = restorer.backbone.num_matching
        self.frame_size = None
        # in eval mode itself: torch.onnx.export puts the exported module back into the mode
        # it found it in, recursively, and a wrapper left in training mode would leave the
        # restorer there too
        self.eval()

    def _step(self, window, state):
        if self.frame_size is not None and torch.jit.is_tracing():
            window = scripted_size_check()(window, *self.frame_size)
        out, state = self.restorer.restore_frame(window, state)
        return out, state.restored, state.feat, tuple(m for m in state.motion if m is not None)

    def forward(self, window, restored, feat, motion):
        """window (1, 5, 3, H, W); state of t-1 -> (out, restored, feat, motion) of t."""
        motion = list(motion) if len(motion) else [None] * self.num_matching
        return self._step(window, MTUState(restored, feat, motion))

    def first(self, window):
        """The first frame of a video (no state yet)."""
        return self._step(window, None)


class _First(nn.Module):
    """``FrameStep.first`` as a module's forward (for ONNX, which exports ``forward`` only)."""

    def __init__(self, step):
        super().__init__()
        self.step = step
        self.eval()  # (see FrameStep)

    def forward(self, window):
        return self.step.first(window)


def example_inputs(restorer, height, width):
    """(window, state tensors) of the right shapes for tracing at ``height`` x ``width``."""
    device = model_device(restorer)
    window = torch.rand(1, WINDOW, 3, height, width, device=device)
    with torch.inference_mode(False), torch.no_grad(), quiet_tracing():
        _, restored, feat, motion = FrameStep(restorer).first(window)
    return window, (restored, feat, motion)


def onnx_paths(path):
    """The two files :func:`export_onnx` writes for ``path``: ``path`` and its ``_first``."""
    return path, f'{osp.splitext(path)[0]}_first.onnx'


def check_export_paths(paths, inputs=(), overwrite=False):
    """Refuse, before any work, an export that would lose a file or could not be written.

    Args:
        paths (list[str]): the files the export writes.
        inputs (list[str]): files it reads (config, checkpoint), which it may never replace.
        overwrite (bool): let an existing output file be replaced.

    Raises:
        ValueError: one line naming the path: an input, a folder, an existing file (without
            ``overwrite``), or a folder that does not exist.
    """
    for path in paths:
        check_output_file(path, inputs, overwrite)


def _save_atomically(save, path, suffix=''):
    """``save(buffer)`` into memory, then :func:`~mtu_toolkit.fileio.write_atomically` to
    ``path`` (a full disk is an ``OSError``, nothing left behind)."""
    buffer = io.BytesIO()
    save(buffer)
    write_atomically(path, buffer.getbuffer(), suffix)


def export_torchscript(restorer, path, height, width):
    """Trace :class:`FrameStep` (``forward`` and ``first``) and save it atomically to ``path``.

    Returns:
        torch.jit.ScriptModule: the traced step (methods ``forward`` and ``first``).
    """
    step = FrameStep(restorer)
    step.frame_size = (int(height), int(width))
    window, state = example_inputs(restorer, height, width)
    with torch.no_grad(), quiet_tracing():
        traced = torch.jit.trace_module(
            step, {'forward': (window, *state), 'first': (window,)}, check_trace=False)
    _save_atomically(lambda f: torch.jit.save(traced, f), path)
    return traced


def export_onnx(restorer, path, height, width, opset=17):
    """Export the step to ``<path>`` (frames t >= 1) and ``<stem>_first.onnx`` (frame 0).

    The graphs' inputs are ``window`` (1, 5, 3, H, W) and, for frames t >= 1, the state
    ``restored_prev``, ``feat_prev``, ``motion_prev0``, ...; their outputs ``out``, then the
    new state ``restored``, ``feat``, ``motion0``, ... (fed back as the ``*_prev`` inputs).
    Needs the ``onnx`` package. Returns the two paths.
    """
    try:
        import onnx  # noqa: F401
    except ImportError as err:
        raise RuntimeError('ONNX export needs the `onnx` package (pip install onnx); the '
                           'TorchScript export works without it') from err
    step = FrameStep(restorer)
    window, (restored, feat, motion) = example_inputs(restorer, height, width)
    first_path = onnx_paths(path)[1]
    names_out = ['out', 'restored', 'feat'] + [f'motion{i}' for i in range(len(motion))]
    # (input names distinct from the outputs': an input named like an output is renamed by
    # the exporter, and could not be fed by its name)
    jobs = [(step, (window, restored, feat, motion), path,
             ['window', 'restored_prev', 'feat_prev']
             + [f'motion_prev{i}' for i in range(len(motion))]),
            (_First(step), (window,), first_path, ['window'])]
    for module, args, target, names_in in jobs:
        def save(f, module=module, args=args, names_in=names_in):
            with torch.no_grad(), quiet_tracing():
                torch.onnx.export(module, args, f, input_names=names_in,
                                  output_names=names_out, opset_version=opset, dynamo=False)
        _save_atomically(save, target, '.onnx')
    return path, first_path


def run_step_module(step, frames):
    """Restore a clip (T, 3, H, W) with an exported step, windows clamped like a stream.

    Args:
        step: a traced/loaded :class:`FrameStep` (``forward`` and ``first``).
        frames (Tensor): (T, 3, H, W) in [0, 1].

    Returns:
        Tensor: (T, 3, H, W) restored frames.
    """
    num = frames.shape[0]
    outs, state = [], None
    for t in range(num):
        window = frames[clamped_indices(t, num)].unsqueeze(0)
        try:
            res = step.first(window) if state is None else step(window, *state)
        except torch.jit.Error as err:  # the traced size check: its own line, not the trace's
            last = str(err).strip().splitlines()[-1]
            if SIZE_ERROR not in last:
                raise
            raise ValueError(last[last.index(SIZE_ERROR):]) from None
        outs.append(res[0][0])
        state = res[1:]
    return torch.stack(outs)
