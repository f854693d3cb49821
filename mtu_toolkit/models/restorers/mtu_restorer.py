"""MTURestorer: trains the MTU network on clips (truncated BPTT of one frame) and infers as a
stream."""
import warnings
from contextlib import nullcontext

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapperDict

from ...memory import KeptBuffers, recycled_copy
from ...checked_registry import ComponentArgumentError
from ...registry import MODELS
from ..window import CONTEXT, WINDOW, clamped_indices, padded_indices, window_at
from .padding import crop_to, pad_to_multiple


def _checked_clip(frames, name='frames', shapes='(T, 3, H, W) or (B, T, 3, H, W)', dims=(4, 5)):
    """``frames`` as :meth:`MTURestorer.infer_clip` reads them (``name`` of ``shapes``, a
    tensor of ``dims`` dimensions; :meth:`FrameStream.push`: a frame), or a one-line error."""
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f'{name} must be a tensor {shapes}, got {type(frames).__name__}')
    if frames.dim() not in dims or frames.shape[-3] != 3:
        raise ValueError(f'{name} must be RGB {shapes}, got shape {tuple(frames.shape)}')
    verb = 'hold' if name.endswith('s') else 'holds'
    if frames.numel() == 0:
        raise ValueError(f'{name} {verb} no pixel (shape {tuple(frames.shape)})')
    if frames.dtype == torch.uint8:
        return frames
    if not frames.is_floating_point():
        raise TypeError(f'{name} must be uint8 (0..255) or floating point in [0, 1], got '
                        f'{frames.dtype}')
    low, high = (float(v) for v in torch.aminmax(frames))
    if not (-0.5 <= low and high <= 1.5):  # (NaN too) 0..255 floats are the usual slip
        raise ValueError(f'floating point {name}: values are read in [0, 1], got values from '
                         f'{low:g} to {high:g} (divide 0..255 values by 255, or pass uint8)')
    return frames if frames.dtype == torch.float32 else frames.float()


@MODELS.register_module()
class MTURestorer(BaseModel):
    """Video deblurring with a recurrent frame model (default: the stacked MTU network).

    Args:
        backbone (dict): the frame model, e.g. ``dict(type='MTUNet', num_units=2)``.
        deblur_loss (dict): loss over the restored outputs (``MultiOutputDeblurLoss``).
        motion_loss (dict | None): loss over the MC heads' cost volumes
            (``MotionCrossEntropyLoss``); needs ``data_samples['flow']``. None disables it.
        losses (dict | None): further loss terms, name -> config of a registered
            :class:`~mtu_toolkit.models.losses.FrameLoss` (names start with ``loss``).
        infer_dtype (str | None): 'float16' or 'bfloat16' runs inference under autocast (the
            paper's "hp" model); None keeps float32.
        data_preprocessor (dict): default ``VideoDataPreprocessor``.
        init_cfg (dict | None): mmengine weight-init config.

    Data: ``inputs`` (B, T+4, 3, H, W) float in [0, 1] holds the T target frames plus two
    context frames each side; ``data_samples`` holds ``gt`` (B, T, 3, H, W) and, for the motion
    loss, ``flow`` (B, T, 2, H, W) (sharp frame t -> t-1, pixels). Any H, W: frames are
    reflect-padded to multiples of 4 and outputs cropped back.

    Training (:meth:`train_step`) steps once per frame of the clip, the recurrent state
    detached between frames (truncated BPTT of one frame). With one ``OptimWrapper`` all loss
    terms are summed; with the two-optimiser recipe (an ``OptimWrapperDict`` with ``deblur``
    and ``motion``, built by ``MTUOptimWrapperConstructor`` over :meth:`optim_param_groups`)
    each optimiser gets the gradient of its own terms, clipped on its own, and both step every
    frame, as the reference implementation trains.
    """

    def __init__(self, backbone, deblur_loss=dict(type='MultiOutputDeblurLoss'),
                 motion_loss=dict(type='MotionCrossEntropyLoss'), losses=None,
                 infer_dtype=None, data_preprocessor=dict(type='VideoDataPreprocessor'),
                 init_cfg=None):
        # built from our registry so that it resolves without mmengine's default scope set
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.deblur_loss = MODELS.build(deblur_loss)
        self.motion_loss = MODELS.build(motion_loss) if motion_loss else None
        extra = dict(losses or {})
        for name in extra:
            if not name.startswith('loss') or name in ('loss_deblur', 'loss_motion'):
                raise ComponentArgumentError(
                    f"model.losses: term names must start with 'loss' and differ from "
                    f"loss_deblur / loss_motion, got {name!r}")
        self.extra_losses = nn.ModuleDict({k: MODELS.build(v) for k, v in extra.items()})
        if infer_dtype not in (None, 'float16', 'bfloat16'):
            raise ComponentArgumentError(f"MTURestorer: infer_dtype must be None, 'float16' or "
                                         f"'bfloat16', got {infer_dtype!r}")
        self.infer_dtype = infer_dtype
        # restore_frame's converted window, for its first thread (see _network_window); a
        # copy or pickle starts without it
        self._kept = KeptBuffers()

    def loss_terms(self):
        """(name, term) of every loss term, in the order they are logged."""
        terms = [('loss_deblur', self.deblur_loss)]
        if self.motion_loss is not None:
            terms.append(('loss_motion', self.motion_loss))
        return terms + list(self.extra_losses.items())

    def optim_param_groups(self):
        """{'deblur': params, 'motion': params} of the two-optimiser recipe: the backbone's
        ``parameter_groups()``, everything else (e.g. learnable loss terms) in 'deblur'."""
        groups = self.backbone.parameter_groups()
        known = {id(p) for ps in groups.values() for p in ps}
        groups['deblur'] = groups['deblur'] + [p for p in self.parameters() if id(p) not in known]
        return groups

    # ------------------------------------------------------------------ training
    def train_step(self, data, optim_wrapper, sync_grads=None):
        """One optimiser step per frame of the clip; the state is detached between frames.

        Args:
            data (dict): a collated batch (see class docstring).
            optim_wrapper (OptimWrapper | OptimWrapperDict): one wrapper for all terms, or
                ``deblur`` and ``motion`` wrappers (see the class docstring).
            sync_grads (callable | None): ``sync_grads(params)`` averages the parameters'
                gradients over the processes (distributed training), called after each
                backward and before the step.

        Returns:
            dict: log variables averaged over the frames.
        """
        data = self.data_preprocessor(data, training=True)
        inputs, samples = data['inputs'], data['data_samples']
        two = isinstance(optim_wrapper, OptimWrapperDict)
        context = optim_wrapper['deblur'] if two else optim_wrapper
        num_frames = inputs.shape[1] - 2 * CONTEXT
        state, totals = None, {}
        for t in range(num_frames):
            with context.optim_context(self):
                losses, state = self.frame_loss(inputs, samples, state, t)
            _, log_vars = self.parse_losses(losses)
            if two:
                self._step_two(losses, optim_wrapper, sync_grads)
            else:
                self._step_one(losses, optim_wrapper, sync_grads)
            state = state.detach()
            for k, v in log_vars.items():
                totals[k] = totals.get(k, 0.) + v.detach()
        return {k: v / num_frames for k, v in totals.items()}

    def _step_one(self, losses, optim_wrapper, sync_grads):
        loss, _ = self.parse_losses(losses)
        if sync_grads is None:
            optim_wrapper.update_params(loss)
            return
        optim_wrapper.backward(loss)
        sync_grads([p for p in self.parameters() if p.grad is not None])
        optim_wrapper.step()
        optim_wrapper.zero_grad()

    def _step_two(self, losses, optim_wrapper, sync_grads):
        """Each optimiser steps on the gradient of its own loss terms (both computed before
        either step changes the weights), clipped and averaged over processes on its own."""
        terms = dict(self.loss_terms())
        group_loss = {}
        for name, value in losses.items():
            group = terms[name].optim_group
            group_loss[group] = group_loss[group] + value if group in group_loss else value
        params = {name: [p for g in wrapper.param_groups for p in g['params']]
                  for name, wrapper in optim_wrapper.items()}
        self.zero_grad(set_to_none=True)
        grads = {}
        order = [g for g in ('motion', 'deblur') if g in group_loss]
        for i, group in enumerate(order):
            optim_wrapper[group].backward(group_loss[group], retain_graph=i < len(order) - 1)
            grads[group] = [p.grad for p in params[group]]
            self.zero_grad(set_to_none=True)
        for group in ('deblur', 'motion'):  # the reference steps the deblurring one first
            if group not in grads:
                continue
            for p, g in zip(params[group], grads[group]):
                p.grad = g
            if sync_grads is not None:
                sync_grads([p for p in params[group] if p.grad is not None])
            optim_wrapper[group].step()
            optim_wrapper[group].zero_grad()
            self.zero_grad(set_to_none=True)

    def frame_loss(self, inputs, samples, state, t):
        """Losses of target frame ``t`` of the clip; returns ``(losses, new_state)``."""
        h, w = inputs.shape[-2:]
        outputs, state_new = self.backbone(pad_to_multiple(window_at(inputs, t)), state)
        outputs = dict(outputs, out=crop_to(outputs['out'], h, w),
                       aux_outs=[crop_to(o, h, w) for o in outputs['aux_outs']])
        targets = dict(gt=samples['gt'][:, t], first_frame=state is None)
        if 'flow' in samples:
            targets['flow'] = pad_to_multiple(samples['flow'][:, t], mode='replicate')
        losses = {}
        for name, term in self.loss_terms():
            value = term.frame_term(outputs, targets)
            if value is not None:
                losses[name] = value
        return losses, state_new

    # ------------------------------------------------------------------ inference
    def autocast_dtype(self, device):
        """The autocast dtype inference runs with on ``device`` (a ``torch.device``), or None
        for float32.

        ``infer_dtype='float16'`` (the "hp" configs) is a GPU setting: a CPU has no fast
        float16 convolution (autocast emulates it, ~10x slower than float32), so on the CPU
        inference runs in float32, with a warning. 'bfloat16' is kept as asked on any device.
        """
        if self.infer_dtype is None:
            return None
        if self.infer_dtype == 'float16' and device.type == 'cpu':
            warnings.warn("infer_dtype='float16' runs in float32 on the CPU (no fast float16 "
                          "convolution there); set it on a GPU or use 'bfloat16'",
                          stacklevel=2)
            return None
        return getattr(torch, self.infer_dtype)

    def _autocast(self, device):
        dtype = self.autocast_dtype(device)
        return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)

    def _network_window(self, window):
        """``window`` as the network reads it: floating point, contiguous. A uint8 window (in
        [0, 1] after the conversion) or a strided view (e.g. frames permuted from HWC) is
        written into one buffer kept from frame to frame: the window is dead once the frame
        is restored, and a fresh one (55 MB at 720p) page-faults on every frame. The buffer
        belongs to the first thread that converts a window; another thread calling the same
        model gets a fresh one each frame, so that two threads never write one buffer."""
        if window.is_floating_point() and window.is_contiguous():
            return window
        dtype = window.dtype if window.is_floating_point() else torch.float32
        buf = self._kept.get('window', window.shape, dtype, window.device)
        buf.copy_(window)
        return buf if window.is_floating_point() else buf.div_(255)

    def restore_frame(self, window, state, return_motion=False):
        """Restore the centre of ``window`` (B, 5, 3, H, W), float in [0, 1] or uint8 in
        0..255 (a stream of 8-bit frames keeps its five frames as bytes: 4x less memory);
        returns ((B, 3, H, W) float in [0, 1], state), and with ``return_motion`` the last
        matching unit's motion as the MC head's ``displacement`` (``(flow, grid)`` or None)
        third. The frame returned is the caller's to change: a copy of the one ``state`` keeps
        as the next frame's R_{t-1}."""
        out, state, *motion = self._restore_frame(window, state, return_motion)
        return (recycled_copy(out), state, *motion)

    @torch.no_grad()
    def _restore_frame(self, window, state, return_motion):
        """:meth:`restore_frame` whose frame is a view of ``state.restored`` (for callers that
        copy it anyway)."""
        h, w = window.shape[-2:]
        window = self._network_window(window)
        with self._autocast(window.device):
            outputs, state = self.backbone(pad_to_multiple(window), state, with_aux=False)
        out = outputs['out'].float().clamp_(0, 1)
        state.restored = out
        if not return_motion:
            return crop_to(out, h, w), state
        motion = outputs['mc'][-1]['motion'] if outputs['mc'] else None
        return crop_to(out, h, w), state, self.backbone.mc_head.displacement(motion, out)

    def restore_clip(self, inputs, return_motion=False):
        """(B, T+4, 3, H, W) with context frames -> (B, T, 3, H, W) restored, in [0, 1]; with
        ``return_motion`` also the per-frame displacements (a list, see :meth:`restore_frame`).
        """
        state, outs, motions = None, [], []
        for t in range(inputs.shape[1] - 2 * CONTEXT):
            # (the stack below copies each frame: no need for restore_frame's own copy)
            out, state, *motion = self._restore_frame(window_at(inputs, t), state,
                                                      return_motion)
            outs.append(out)
            motions += motion
        return (torch.stack(outs, 1), motions) if return_motion else torch.stack(outs, 1)

    def infer_clip(self, frames):
        """Restore a whole clip (T, 3, H, W) or (B, T, 3, H, W), ends clamped like a stream.

        ``frames``: uint8 in 0..255 or floating point in [0, 1] (float64 and half precision
        are read as float32; values beyond [-0.5, 1.5], such as floats in 0..255, are
        refused); anything else is refused with one line naming the problem.
        Returns float32 in [0, 1] of the same layout."""
        frames = _checked_clip(frames)
        single = frames.dim() == 4
        frames = frames.unsqueeze(0) if single else frames
        idx = torch.tensor(padded_indices(frames.shape[1]), device=frames.device)
        out = self.restore_clip(frames[:, idx])
        return out[0] if single else out

    def stream(self):
        """A :class:`FrameStream` over this model: push frames one by one, get restored ones."""
        return FrameStream(self)

    def forward(self, inputs, data_samples=None, mode='tensor', state=None, t=0):
        """mmengine entry point.

        mode 'loss': summed losses over the clip (one backward for the whole clip; per-frame
        steps go through :meth:`train_step`). 'predict': list of dicts (pred, gt, key,
        frame_indices, and the MC head's displacement: see :meth:`_to_results`) on CPU per
        batch item. 'tensor': restored clip (B, T, 3, H, W).
        'frame_loss': losses of frame ``t`` given ``state`` (used by :meth:`train_step`).
        """
        if mode == 'frame_loss':
            return self.frame_loss(inputs, data_samples, state, t)
        if mode == 'loss':
            totals, state = {}, None
            for t in range(inputs.shape[1] - 2 * CONTEXT):
                losses, state = self.frame_loss(inputs, data_samples, state, t)
                state = state.detach()
                for k, v in losses.items():
                    totals[k] = totals.get(k, 0.) + v
            return totals
        if mode == 'predict':
            pred, motions = self.restore_clip(inputs, return_motion=True)
            return self._to_results(pred, data_samples, motions)
        pred = self.restore_clip(inputs)
        if mode == 'tensor':
            return pred
        raise ValueError(f"mode must be 'loss', 'predict', 'tensor' or 'frame_loss', got {mode!r}")

    @staticmethod
    def _to_results(pred, samples, motions=()):
        samples = samples or {}
        results = []
        for i in range(pred.shape[0]):
            res = dict(pred=pred[i].cpu())
            # the MC head's displacement of every frame (for MCAlignmentMetric): (T, 2, h, w)
            # float16 on its own grid (absent where the motion is no displacement)
            if motions and motions[0] is not None:
                res['displacement'] = torch.stack([m[0][i] for m in motions]).half().cpu()
                res['displacement_grid'] = motions[0][1]
            if 'gt' in samples:
                res['gt'] = samples['gt'][i].float().cpu()
            for key in ('key', 'frame_indices'):
                if key in samples:
                    res[key] = _item(samples[key], i)
            results.append(res)
        return results


def _item(value, i):
    """Item i of a collated field (lists of str stay lists; collated index lists are transposed)."""
    if isinstance(value, torch.Tensor):
        return value[i].tolist() if value.dim() else value.item()
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
        return [int(v[i]) for v in value]  # default_collate turns list[int] into T tensors of B
    return value[i]


class FrameStream:
    """Frame-by-frame inference with the two-frame look-ahead of the 5-frame window.

    ``push(frame)`` (B, 3, H, W) returns the restored frames that became ready (the one two
    frames back, once it has its look-ahead); ``flush()`` returns the last ones, clamping the
    window at the end, and ends the clip: the next ``push`` starts a new one. Only the
    recurrent state and five input frames are kept, so memory stays flat however long the
    stream. Gives the same frames as :meth:`MTURestorer.infer_clip`.

    The stream keeps a copy of each frame pushed, so the caller may refill one buffer frame
    after frame (a camera's, ``cv2.VideoCapture.read(image=...)``); the frames it returns are
    the caller's to change.

    Args:
        restorer: anything with ``restore_frame(window, state)``.
        stack (bool): hand ``restore_frame`` the window as one (B, 5, 3, H, W) tensor (default)
            or as the list of its five (B, 3, H, W) frames (for restorers that read the window
            piecewise, such as the tiled one).
    """

    def __init__(self, restorer, stack=True):
        self.restorer = restorer
        self.stack = stack
        self.frames = []     # the last <= 5 input frames
        self.state = None
        self.next_out = 0    # index of the next frame to restore
        self.count = 0       # frames pushed so far

    def _window(self, t):
        """Window centred on frame t from the kept frames, indices clamped to [0, count)."""
        first = self.count - len(self.frames)
        frames = [self.frames[i - first] for i in clamped_indices(t, self.count)]
        return torch.stack(frames, 1) if self.stack else frames

    def _restore(self, t):
        out, self.state = self.restorer.restore_frame(self._window(t), self.state)
        self.next_out += 1
        return out

    def push(self, frame):
        """Add ``frame`` (3, H, W) or (B, 3, H, W), uint8 in 0..255 or floating point in
        [0, 1] (checked as :meth:`MTURestorer.infer_clip` checks a clip; every frame of a clip
        of the size and type of its first); returns the restored frames now ready."""
        given = frame
        frame = _checked_clip(frame, 'frame', '(3, H, W) or (B, 3, H, W)', dims=(3, 4))
        # (a copy of the caller's frame: the window reads it again up to four pushes later; a
        # frame read as float32 is a copy already)
        frame = frame.clone() if frame is given else frame
        if frame.dim() == 3:
            frame = frame.unsqueeze(0)
        if self.frames and (frame.shape != self.frames[-1].shape
                            or frame.dtype != self.frames[-1].dtype):
            last = self.frames[-1]
            raise ValueError(f'frame {self.count} is {tuple(frame.shape)} {frame.dtype}, the '
                             f'frames before it {tuple(last.shape)} {last.dtype}: a clip holds '
                             'frames of one size and type (flush() ends a clip)')
        self.frames = (self.frames + [frame])[-WINDOW:]
        self.count += 1
        ready = []
        while self.next_out + CONTEXT < self.count:
            ready.append(self._restore(self.next_out))
        return ready

    def flush(self):
        ready = []
        while self.next_out < self.count:
            ready.append(self._restore(self.next_out))
        self.frames, self.state, self.next_out, self.count = [], None, 0, 0  # the clip ended
        return ready
