"""Write the golden fixture of the released-checkpoint import (``official_mtu_tiny.npz``).

    python tests/golden/make_official_fixture.py --reference /path/to/RealTime_VDBLR \\
        [--video /usr/share/doc/opencv-doc/examples/data/vtest.avi] [--out DIR]

How the committed fixture was made (this command, with the reference implementation of the
paper's authors, github.com/codeslake/RealTime_VDBLR, checked out at ``--reference``, and
``vtest.avi`` of Debian's ``opencv-doc`` package):

1. Weights: a tiny variant in the released format, i.e. the ``state_dict()`` of the authors'
   training wrapper (keys ``Network.*``): 2 units, ch 6, 1 residual block, one matching layer
   (feature-matching skipping), with the training-only ``deblur_layer``. Convolutions are drawn
   normal with std ``0.7 * sqrt(2 / fan_in)`` (0.3 times that for the output layers ``out`` and
   ``deblur_layer``; the authors' N(0, 0.03) leaves a network this narrow close to the
   identity, He's full scale saturates most outputs), biases N(0, 0.05), seed 0; every value is
   rounded to float16, which is how the fixture stores it (the float32 upcast is exact). The
   network then changes the frames by 0.12 on average (5% of the values clamped) and its
   matching moves more than half of the positions.
2. Clip: 6 consecutive frames (100..105) of ``vtest.avi`` (real footage: pedestrians in front of
   a building, fixed camera), each downscaled 4x (area) to 192x144 and cropped 32x48 at
   (y, x) = (48, 64 + 4k) for frame k, so that the clip pans by one motion-feature pixel per
   frame on top of the pedestrians' own motion.
3. The reference network itself (the authors' ``models/archs/MTU.py``, imported from
   ``--reference``) restores the clip as the authors' ``eval.py`` feeds it: the five-frame
   window ``I_{t-2..t+2}`` clamped at the ends, ``R_prev`` = the first frame at frame 0 and
   then the previous output clamped to [0, 1], ``is_first_frame`` true at frame 0 only. Its
   test-time network (no ``deblur_layer``) and its training network (with it) are both run and
   must give the same frames.

The fixture stores the weights (``w/<key>``, float16), the clip (``clip``, uint8 RGB
(T, H, W, 3)), the reference's output frames (``out``, uint16 = round(65535 x), quantisation
error <= 7.7e-6), the displacement its matching layer found at each frame (``motion``, int8
(T, 2, H/4, W/4), (dx, dy) in 1/4-resolution pixels) and ``info`` (JSON: how it was made).

The reference runs on CPU with two changes made at run time, in memory (its files are not
modified, and none of its code is part of this project): its CUDA correlation package is
replaced by :class:`PlainCorrelation` (the same function: the mean over channels of the product
of the first feature and the shifted second one, zero outside, channel
``(dy + D) * (2D + 1) + (dx + D)``), and the two lines of its ``models/utils.py`` that put
tensors on CUDA (the sampling grid of ``warp`` and the matching index of ``FM``) are rewritten
to keep them on the input's device.
"""
import argparse
import json
import os
import os.path as osp
import sys
import types
from collections import OrderedDict

import cv2
import numpy as np
import torch
import torch.nn as nn

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
from reference_runtime import PlainCorrelation  # noqa: E402

FIXTURE = 'official_mtu_tiny.npz'
VIDEO = '/usr/share/doc/opencv-doc/examples/data/vtest.avi'
# the tiny variant of the fixture
TINY = dict(num_units=2, channels=6, num_blocks=1)
MAX_DISPLACEMENT = 10  # D of every released model


class SetupError(RuntimeError):
    """``--reference`` or ``--video`` is not what the script needs (the scripts print it as one
    line, exit code 2, as a missing file)."""


def _substitute(source, old, new, path):
    if old not in source:
        raise SetupError(f'{path}: expected text {old!r} not found; is --reference the '
                           'RealTime_VDBLR checkout?')
    return source.replace(old, new)


def load_reference_network(reference):
    """The ``Network`` class of ``<reference>/models/archs/MTU.py``, runnable on CPU.

    The reference's modules are executed from their files under their own names
    (``models.utils``, ``models.archs.MTU``) with the two run-time changes of the module
    docstring; ``sys.modules`` is restored afterwards.
    """
    utils_path = osp.join(reference, 'models', 'utils.py')
    mtu_path = osp.join(reference, 'models', 'archs', 'MTU.py')
    for path in (utils_path, mtu_path):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{path} not found: --reference must be the '
                                    'RealTime_VDBLR checkout')
    with open(utils_path) as f:
        utils_src = f.read()
    # warp's sampling grid goes to CUDA; FM's matching index becomes a CUDA tensor
    utils_src = _substitute(utils_src, "torch.device('cuda')", 'tensorFlow.device', utils_path)
    utils_src = _substitute(utils_src, '.type(torch.cuda.FloatTensor)', '.float()', utils_path)
    with open(mtu_path) as f:
        mtu_src = f.read()

    names = ['models', 'models.utils', 'models.archs', 'models.archs.MTU',
             'models.archs.correlation_package', 'models.archs.correlation_package.correlation']
    saved = {n: sys.modules.get(n) for n in names}
    try:
        for n in names:
            sys.modules[n] = types.ModuleType(n)
            if n in ('models', 'models.archs', 'models.archs.correlation_package'):
                sys.modules[n].__path__ = []
        sys.modules['models.archs.correlation_package.correlation'].Correlation = \
            PlainCorrelation
        exec(compile(utils_src, utils_path, 'exec'), sys.modules['models.utils'].__dict__)
        mtu = sys.modules['models.archs.MTU']
        mtu.__file__ = mtu_path
        exec(compile(mtu_src, mtu_path, 'exec'), mtu.__dict__)
        return mtu.Network
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod


def reference_config(num_units, channels, num_blocks, max_displacement=MAX_DISPLACEMENT):
    """The attributes the reference network reads from its config (skipping: only the first
    unit matches, as in every released model)."""
    return types.SimpleNamespace(
        dist=False, ch=channels, RB_num=num_blocks, HG_num=num_units,
        max_displacement=max_displacement, skip_corr_index=list(range(1, num_units)),
        save_sample=False)


class Wrapper(nn.Module):
    """Holds the network as ``Network``, as the authors' training wrapper does, so that its
    ``state_dict()`` has the released keys ``Network.*``."""

    def __init__(self, network):
        super().__init__()
        self.Network = network


def build_reference(network_cls, with_deblur_layers, **size):
    """The reference network: training form (``deblur_layer`` present) or test-time form."""
    net = network_cls(reference_config(**size), is_distill=False if with_deblur_layers else None)
    return Wrapper(net).eval()


def random_released_state(network_cls, std=None, gain=0.7, out_scale=0.3, bias_std=0.05,
                          seed=0, half=True, **size):
    """A released-format state dict (with ``deblur_layer``) of random weights.

    Args:
        std (float | None): normal std of every conv weight (the authors' init: 0.03); None:
            ``gain`` x He-normal per layer (``gain * sqrt(2 / fan_in)``; fan-in of a stride-2
            transposed conv = in * k * k / 4) and ``out_scale`` x that for the output layers
            (``out``, ``deblur_layer``), which keeps most restored values inside [0, 1].
        bias_std (float): normal std of the biases.
        half (bool): round every value to float16 (kept as float32).
    """
    gen = torch.Generator().manual_seed(seed)
    state = build_reference(network_cls, True, **size).state_dict()
    out = OrderedDict()
    for key, value in state.items():
        if key.endswith('.bias'):
            new = torch.randn(value.shape, generator=gen) * bias_std
        else:
            if std is None:
                transposed = '.dec1.' in key or '.dec2.' in key
                fan_in = (value.shape[0] * value[0, 0].numel() / 4 if transposed
                          else value[0].numel())
                scale = gain * (2.0 / fan_in) ** 0.5
                if key.startswith('Network.out.') or '.deblur_layer.' in key:
                    scale *= out_scale
            else:
                scale = std
            new = torch.randn(value.shape, generator=gen) * scale
        out[key] = new.half().float() if half else new
    return out


def read_clip(video, first=100, num=6, scale=4, size=(32, 48), origin=(48, 64), pan=(0, 4)):
    """``num`` RGB frames (T, H, W, 3) uint8 of ``video`` from frame ``first``: each downscaled
    ``scale`` x (area) and cropped ``size`` at ``origin + k * pan`` (y, x)."""
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise FileNotFoundError(f'{video}: cannot be opened')
    frames, index = [], 0
    while len(frames) < num:
        ok, frame = cap.read()
        if not ok:
            raise SetupError(f'{video}: ends before frame {first + num - 1}')
        if index >= first:
            k = len(frames)
            small = cv2.resize(frame, (frame.shape[1] // scale, frame.shape[0] // scale),
                               interpolation=cv2.INTER_AREA)
            y, x = origin[0] + k * pan[0], origin[1] + k * pan[1]
            crop = small[y:y + size[0], x:x + size[1], ::-1]
            if crop.shape[:2] != tuple(size):
                raise RuntimeError(f'{video}: crop {size} at {(y, x)} leaves the frame')
            frames.append(np.ascontiguousarray(crop))
        index += 1
    return np.stack(frames)


def to_tensor(clip):
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float32 in [0, 1] (the reference reads frames / 255)."""
    return torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255


@torch.no_grad()
def run_reference(wrapper, frames):
    """Restore ``frames`` (T, 3, H, W) as the reference's ``eval.py`` does.

    Returns:
        tuple: outputs (T, 3, H, W) clamped to [0, 1], and the displacement of the matching
        unit at each frame (T, 2, H/4, W/4) int64 (dx, dy) in 1/4-resolution pixels.
    """
    net = wrapper.Network
    num = frames.shape[0]
    outs, motion = [], []
    r_prev = None
    for j in range(num):
        idx = np.clip(np.arange(j - 2, j + 3), 0, num - 1)
        window = [frames[k:k + 1] for k in idx]
        if j == 0:
            r_prev = window[0]
        out = net(*window, r_prev, j == 0)['result'].clamp(0, 1)
        r_prev = out
        outs.append(out[0])
        # the matching unit's motion, kept by the network for the skipping units: full
        # resolution, 4x the 1/4-resolution displacement, repeated over 4x4 blocks
        motion.append((net.flow_prev[0, :, ::4, ::4] / 4).round().long())
    return torch.stack(outs), torch.stack(motion)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reference', required=True,
                        help='checkout of github.com/codeslake/RealTime_VDBLR')
    parser.add_argument('--video', default=VIDEO, help='real footage to take the clip from')
    parser.add_argument('--out', default=HERE, help='folder to write the fixture to')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    try:  # a wrong --reference or --video: one line, not a traceback
        network_cls = load_reference_network(args.reference)
        state = random_released_state(network_cls, **TINY)
        clip = read_clip(args.video)
    except (FileNotFoundError, SetupError) as err:
        parser.exit(2, f'error: {err}\n')
    frames = to_tensor(clip)

    train_net = build_reference(network_cls, True, **TINY)
    train_net.load_state_dict(state, strict=True)
    test_net = build_reference(network_cls, False, **TINY)
    test_net.load_state_dict({k: v for k, v in state.items() if '.deblur_layer.' not in k},
                             strict=True)
    out, motion = run_reference(test_net, frames)
    out_train, motion_train = run_reference(train_net, frames)
    assert torch.equal(out, out_train) and torch.equal(motion, motion_train)

    moved = (motion[1:] != 0).any(1).float().mean().item()
    change = (out - frames).abs().mean().item()
    print(f'reference: mean |out - in| {change:.4f}; non-zero displacement at '
          f'{100 * moved:.0f}% of the positions of frames 1..{len(clip) - 1}')
    if moved < 0.2 or change < 0.01:
        raise RuntimeError('the fixture would be too trivial: matching moves too little or the '
                           'network barely changes the frames')

    info = dict(
        made_by='tests/golden/make_official_fixture.py --reference <RealTime_VDBLR checkout>',
        variant=dict(TINY, num_matching=1, deblur_layers=True, max_displacement=MAX_DISPLACEMENT),
        weights='convs N(0, (0.7 sqrt(2 / fan_in))^2), output layers x0.3, biases N(0, 0.05), '
                'seed 0, rounded to float16',
        video=osp.basename(args.video) + " (Debian package opencv-doc, examples/data)",
        clip='frames 100..105, downscaled 4x (INTER_AREA) to 192x144, crop 32x48 at (y, x) = '
             '(48, 64 + 4k) for frame k; RGB',
        out='reference test-time network (and training network: equal), fed as its eval.py; '
            'uint16 = round(65535 * clamp(out, 0, 1))',
        motion='matching unit displacement (dx, dy) at 1/4 resolution per frame',
        torch=torch.__version__)
    arrays = {f'w/{k}': v.half().numpy() for k, v in state.items()}
    arrays.update(clip=clip, out=(out.permute(0, 2, 3, 1).numpy() * 65535).round()
                  .astype(np.uint16), motion=motion.numpy().astype(np.int8),
                  info=np.array(json.dumps(info)))
    path = osp.join(args.out, FIXTURE)
    tmp = f'{path}.tmp-{os.getpid()}.npz'
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    print(f'wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)')


if __name__ == '__main__':
    main()
