"""Streaming inference: deblur a video file or frame folder of any length in flat memory.

    restorer = init_restorer('configs/mtu/mtu2_gopro.py', 'mtu2.pth', device='cuda')
    deblur_video(restorer, 'shaky.mp4', 'sharp.mp4', side_by_side=True)

    for blurry, sharp in deblur_frames(restorer, frames):  # (H, W, 3) uint8 RGB in and out
        ...

Only the model's recurrent state and its 5-frame window (two frames of look-ahead) are kept;
decoding and encoding run in their own threads, overlapping the model.
"""
import math
import time
from collections import deque

import numpy as np
import torch

from ..fileio import signals_held
from ..progress import ProgressLine
from .errors import InferenceError
from .init_restorer import model_device
from .pipeline import BackgroundReader, BackgroundWriter
from .video_io import open_reader, open_writer

#: at most this many bytes of decoded frames wait on either side of the model (flat memory at
#: 4K: eight queued 4K frames are 200 MB a side)
QUEUE_BYTES = 64 << 20
#: the highest frame rate a video is written at (encoders refuse, or hang on, absurd ones)
MAX_FPS = 1000.0


def frame_to_tensor(rgb, device):
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1] on ``device``."""
    t = torch.from_numpy(rgb).to(device, non_blocking=True)
    return t.permute(2, 0, 1).unsqueeze(0).float().div_(255)


def tensor_to_frame(t):
    """(1, 3, H, W) or (3, H, W) float in [0, 1] -> (H, W, 3) uint8 RGB (rounded) on the CPU."""
    t = t.reshape(t.shape[-3:]).float().clamp(0, 1).mul(255).round_().to(torch.uint8)
    return np.ascontiguousarray(t.permute(1, 2, 0).cpu().numpy())


def check_fps(fps):
    """An InferenceError unless ``fps`` is None or a frame rate in (0, :data:`MAX_FPS`]."""
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise InferenceError(f'fps must be a frame rate in (0, {MAX_FPS:g}], got {fps!r}')


def _check_frame(rgb, index, size):
    """The (H, W) of frame ``index``, or a one-line error (``size``: the first frame's)."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        what = (f'shape {rgb.shape}' if isinstance(rgb, np.ndarray)
                else type(rgb).__name__)
        raise ValueError(f'frame {index}: expected an (H, W, 3) uint8 RGB array, got {what}')
    if rgb.dtype != np.uint8:
        raise TypeError(f'frame {index}: expected uint8 values 0..255, got {rgb.dtype}')
    if size is not None and rgb.shape[:2] != size:
        raise ValueError(f'frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the first frame '
                         f'{size[1]}x{size[0]}: a stream has one frame size')
    return rgb.shape[:2]


@torch.inference_mode()
def deblur_frames(restorer, frames):
    """Restore a stream of frames with ``restorer.stream()`` (latency two frames).

    Args:
        restorer (MTURestorer): in eval mode, on its device.
        frames (iterable): (H, W, 3) uint8 RGB frames, all the same size.

    Yields:
        tuple: ``(blurry, restored)``, both (H, W, 3) uint8 RGB, in input order.
    """
    device = model_device(restorer)
    stream, waiting, size = restorer.stream(), deque(), None
    for index, rgb in enumerate(frames):
        size = _check_frame(rgb, index, size)
        # a copy (the caller may refill its buffer: the frame is yielded two frames later),
        # contiguous (a view such as bgr[..., ::-1] has negative strides)
        rgb = np.array(rgb, order='C')
        waiting.append(rgb)
        # the stream keeps its window as bytes; the restorer converts what it reads
        frame = torch.from_numpy(rgb).to(device, non_blocking=True).permute(2, 0, 1)[None]
        for out in stream.push(frame):
            yield waiting.popleft(), tensor_to_frame(out)
    for out in stream.flush():
        yield waiting.popleft(), tensor_to_frame(out)


def deblur_video(restorer, input_path, output_path, side_by_side=False, fps=None,
                 progress=True, queue_size=8, overwrite=False):
    """Deblur ``input_path`` into ``output_path`` (each a video file or a frame folder).

    The output keeps the input's frame rate and size (twice the width with ``side_by_side``:
    input left, restored right) and appears only once complete; on any error the partial
    output is deleted.

    Args:
        restorer (MTURestorer): in eval mode (see :func:`init_restorer`).
        input_path (str): video file (mp4/avi/mov/... via OpenCV) or folder of frames.
        output_path (str): video file (by extension) or folder (PNG frames).
        side_by_side (bool): write input and result next to each other.
        fps (float | None): frame rate of a frame-folder input (default 25) or an override.
        progress (bool): draw a progress bar on stderr.
        queue_size (int): frames buffered between decoder, model and encoder, each side (fewer
            where they would hold more than ``QUEUE_BYTES``: at 4K, two).
        overwrite (bool): replace an existing output video file (never the input itself).

    Returns:
        dict: ``frames`` written, ``fps`` of the output, ``seconds`` and ``speed`` (frames/s).

    Raises:
        InputError, OutputError: with one clear sentence naming the file at fault.
    """
    check_fps(fps)
    reader = open_reader(input_path, fps)
    width, height = reader.size
    frames = sink = writer = bar = None
    try:  # (everything set up in here is undone on any error, Ctrl-C included)
        depth = max(2, min(queue_size, QUEUE_BYTES // (3 * width * height)))
        # Ctrl-C / SIGTERM wait until the temporary output and the threads have their names
        # here: arriving in between, they left a temporary no one removed, or a reader thread
        # decoding from the capture being closed below (a crash or a hang inside FFmpeg)
        with signals_held():
            writer = open_writer(output_path, reader.fps,
                                 (2 * width if side_by_side else width, height),
                                 overwrite=overwrite, input_path=input_path)
            frames = BackgroundReader(reader, depth)
            sink = BackgroundWriter(writer.write, depth)
        bar = ProgressLine(reader.num_frames, unit='frames', enabled=progress)
        for blurry, restored in deblur_frames(restorer, frames):
            sink.put(np.concatenate((blurry, restored), 1) if side_by_side else restored)
            bar.update()
        sink.close()
        writer.commit()
    except BaseException:
        if frames is not None:
            frames.close()
        reader.close()
        if sink is not None:
            sink.abort()
        if writer is not None:
            writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return dict(frames=bar.count, fps=reader.fps, seconds=time.perf_counter() - bar.start,
                speed=bar.fps)
