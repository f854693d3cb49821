"""Honest speed measurement of the MTU variants (paper protocol: batch 1, 1280x720 frames of a
panning camera, :class:`PanningClip`, device synchronised before and after each frame, median
over many frames after a warm-up).

Besides ms/frame the benchmark reports the share of time spent in motion compensation (motion
layer, matching, warp: the backbone's profiler ranges, read with ``torch.profiler``) and, to
judge the implementation rather than the machine, the conv-FLOP floor: the convolution FLOPs of
one frame (counted by :mod:`mtu_toolkit.analysis.complexity`) over the GEMM rate of the same
device measured in the same run, and the ratio of the measured time to that floor.
The GEMM rate is measured right before each timed frame and each frame is held to its own
floor: a shared VM's speed drifts by tens of percent between minutes, and a rate measured once
per run would report the drift as the implementation's.
"""
import hashlib
import importlib.util
import math
import os
import statistics
import time

import numpy as np
import torch

from .complexity import check_frame_size, frame_conv_flops

#: variant -> (config, inference dtype, paper's RTX 3090 ms/frame at 1280x720)
VARIANTS = {
    'MTU1': ('configs/mtu/mtu1_gopro.py', None, 32),
    'MTU2': ('configs/mtu/mtu2_gopro.py', None, 54),
    'MTU2-hp': ('configs/mtu/mtu2_hp_gopro.py', 'float16', 33),
    'MTU4': ('configs/mtu/mtu4_gopro.py', None, 84),
    'MTU10': ('configs/mtu/mtu10_gopro.py', None, 178),
    'MTU10-L': ('configs/mtu/mtu10_l_gopro.py', None, 421),
}


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def gemm_rate(device, size=2048, reps=5, dtype=torch.float32):
    """Median FLOP/s of ``torch.mm`` on (size x size) matrices: the device's dense-math rate."""
    a = torch.rand(size, size, device=device, dtype=dtype)
    b = torch.rand(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    rates = []
    for _ in range(reps):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        rates.append(2 * size ** 3 / (time.perf_counter() - start))
    return statistics.median(rates)


def mc_seconds(restorer, clip, start, frames, device, state=None):
    """Seconds of motion compensation in ``frames`` frames of ``restorer`` (the windows
    ``clip.window(start)`` on, from ``state``): the time inside the backbone's profiler ranges
    named :data:`~mtu_toolkit.models.backbones.mtu_net.MC_RANGE` (motion layer, matching,
    warp), read from ``torch.profiler``: on the CPU their CPU time; on CUDA the GPU time of
    the work they launched (:func:`gpu_seconds_in`).

    Returns:
        tuple: ``(mc_seconds, frame_seconds)`` summed over the frames.
    """
    from torch.profiler import ProfilerActivity, profile

    from ..models.backbones.mtu_net import MC_RANGE
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    with profile(activities=activities) as prof:
        times, _ = time_frames(restorer, clip, start, 0, frames, device, state)
    if device.type == 'cuda':
        return gpu_seconds_in(prof.events(), MC_RANGE), sum(times)
    micros = sum(e.cpu_time_total for e in prof.events() if e.name == MC_RANGE)
    return micros / 1e6, sum(times)


def gpu_seconds_in(events, name):
    """GPU seconds of the work done inside the profiler ranges called ``name`` on a CUDA
    trace (NaN where the trace cannot tell).

    Two parts. The kernels that torch.profiler links to an op inside the ranges (their CPU-side
    events' device time). And the compiled extension's ops (``correlation_argmax``, the warp):
    called through pybind, not the dispatcher, their kernels are linked to no op, so they are
    read from the GPU-side copies of their own ranges (:data:`~mtu_toolkit.ops.functions.
    ARGMAX_RANGE`, ``WARP_RANGE``), the n-th on the GPU being the n-th on the CPU, counted
    where that CPU range runs inside one called ``name``.
    """
    from torch.autograd import DeviceType

    from ..ops.functions import ARGMAX_RANGE, WARP_RANGE
    from .stages import _ancestors
    on_cpu = [e for e in events if e.device_type == DeviceType.CPU]
    on_gpu = [e for e in events if e.device_type == DeviceType.CUDA]
    micros = sum(e.device_time_total for e in on_cpu if e.name == name)
    for op in (ARGMAX_RANGE, WARP_RANGE):
        calls = sorted((e for e in on_cpu if e.name == op), key=lambda e: e.time_range.start)
        spans = sorted((e for e in on_gpu if e.name == op), key=lambda e: e.time_range.start)
        if len(calls) != len(spans):
            return math.nan
        micros += sum(g.time_range.elapsed_us() for c, g in zip(calls, spans)
                      if any(a.name == name for a in _ancestors(c)))
    return micros / 1e6


def time_frames(restorer, clip, start, warmup, frames, device, state=None):
    """Per-frame synchronised times (s) of ``restorer.restore_frame`` over ``frames`` frames
    after ``warmup`` untimed ones, fed the consecutive windows ``clip.window(start)``,
    ``clip.window(start + 1)``, ... (a :class:`PanningClip`) and carrying the recurrent state
    (starting from ``state``).

    Returns:
        tuple: ``(times, state)``: the timed frames' seconds and the last frame's state.
    """
    times = []
    for i in range(warmup + frames):
        # built outside the timing: a camera hands the model its frames ready
        window = clip.window(start + i)
        synchronize(device)
        begin = time.perf_counter()
        _, state = restorer.restore_frame(window, state)
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - begin)
    return times, state


def alternating_medians(calls, repeats, before=None):
    """{name: median seconds} of no-argument callables called in turn (so that a machine
    getting busier or quieter moves them alike), after one warm-up round. Round ``r`` starts
    at the ``r``-th call (the order rotated): a call that always came right after the same
    one (say a GEMM that leaves the caches full of its matrices) would be timed in that
    one's wake every round, and another never. ``before``: a no-argument callable run
    (untimed) before each timed call, e.g. one that flushes the caches."""
    for fn in calls.values():
        fn()
    items = list(calls.items())
    times = {name: [] for name in calls}
    for r in range(repeats):
        k = r % len(items)
        for name, fn in items[k:] + items[:k]:
            if before is not None:
                before()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def frame_size(text):
    """The argparse ``type`` of the benchmarks' ``--size WIDTHxHEIGHT``: ``(width, height)`` in
    px, refused (one argparse error line) unless positive multiples of 4
    (:func:`~mtu_toolkit.analysis.complexity.check_frame_size`: another size would be padded,
    and a larger frame than asked for timed)."""
    from ..engine.config_loader import size_type
    return size_type(check_frame_size)(text)


#: the least value of each timing option of the benchmark scripts
LEAST = {'frames': 1, 'repeats': 1, 'warmup': 0, 'threads': 1, 'stage_frames': 1}


def check_timing_arguments(parser, args):
    """End the run with one line (``parser.error``, exit 2) where a timing option is out of
    range: ``--frames``, ``--repeats`` or ``--stage-frames`` under 1 (no median of nothing),
    ``--warmup`` under 0, ``--threads`` under 1. Options that the script lacks or that are
    unset (None) pass."""
    for name, least in LEAST.items():
        value = getattr(args, name, None)
        if value is not None and value < least:
            parser.error(f'--{name.replace("_", "-")} must be >= {least}, got {value}')


def load_build(path, name):
    """Another build of one of the compiled extensions (``name``: its module name, ``'_ext'``
    or ``'_conv_cpu'``), loaded from the file ``path`` beside the installed one: the old side
    of an old-against-new benchmark. Raises ImportError naming ``path`` where it is missing or
    not a build of that extension.

    Each file gets a module name of its own (``<digest of its path>.<name>``): CPython keeps
    a loaded extension module by its name, so a second build loaded under the bare name was
    the first one again (its code, its ``__file__``), and two builds compared in one process
    were one build compared with itself."""
    digest = hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(f'mtu_build_{digest}.{name}', path)
    try:
        if spec is None:
            raise ImportError('not a Python extension file name')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (ImportError, OSError) as err:
        raise ImportError(f'{path}: cannot load it as a build of mtu_toolkit.{name} '
                          f'({str(err).splitlines()[0] if str(err) else type(err).__name__})')
    return module


class PanningClip:
    """A camera panning over real image content (scikit-image's astronaut): frame ``i`` is the
    (3, H, W) crop at offset (``DY * p``, ``DX * p``) px, in [0, 1], where the pan position
    ``p`` runs 0, 1, ..., ``PERIOD`` and back (a triangle wave), so the content moves ``DX`` px
    left and ``DY`` px up a frame (the camera right and down), turning back every ``PERIOD``
    frames. The matching works at 1/4 resolution: 2 and 1 px there, a motion it must find
    (the same window every frame would give it a frame matched with itself: zero motion, and
    a warp that is a copy).

    Only the ``PERIOD + 1`` distinct frames are held (on ``device``).
    """
    DX, DY, PERIOD = 8, 4, 8

    def __init__(self, height, width, device):
        from skimage import data
        import cv2
        img = cv2.resize(data.astronaut(), (width + self.DX * self.PERIOD,
                                            height + self.DY * self.PERIOD),
                         interpolation=cv2.INTER_AREA)
        crops = [img[self.DY * p:self.DY * p + height, self.DX * p:self.DX * p + width]
                 for p in range(self.PERIOD + 1)]
        # (PERIOD + 1, 3, H, W)
        self.frames = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255) \
            .to(device)

    def position(self, i):
        """The pan position of frame ``i`` (any int): 0..PERIOD and back."""
        return self.PERIOD - abs(i % (2 * self.PERIOD) - self.PERIOD)

    def frame(self, i):
        """Frame ``i``: (3, H, W) in [0, 1] (a view of the held frames)."""
        return self.frames[self.position(i)]

    def window(self, k):
        """Frames ``k`` .. ``k + 4``: a new (1, 5, 3, H, W) tensor in [0, 1], whose centre is
        frame ``k + 2``."""
        index = torch.tensor([self.position(k + j) for j in range(5)],
                             device=self.frames.device)
        return self.frames.index_select(0, index).unsqueeze(0)


def benchmark_restorer(restorer, fast, height, width, device, warmup=3, frames=20,
                       mc_frames=3):
    """Measure one model on consecutive frames of a :class:`PanningClip` (warm-up, timed, then
    the instrumented frames), the recurrent state carried from the first to the last.

    Args:
        restorer (MTURestorer): eager model in eval mode on ``device`` (FLOPs counted on it).
        fast (MTURestorer): the model actually timed (e.g. :func:`optimize_for_inference`).
        height, width (int): frame size in px.
        warmup, frames (int): untimed and timed frames; the median is reported.
        mc_frames (int): extra instrumented frames for the motion-compensation share.

    Returns:
        dict: params (M), ms (median ms/frame), ms_mean, fps, mc_share, gflops (conv FLOPs per
        frame), gemm_gflops (median rate), floor_ms (at that rate), ratio (the median over
        frames of each frame's time over the floor at the GEMM rate measured just before it),
        frame_ratios (per timed frame), frames.
    """
    from ..models import count_parameters
    clip = PanningClip(height, width, device)
    # half-precision models are held to the half-precision GEMM rate
    dtype = restorer.autocast_dtype(torch.device(device)) or torch.float32
    with torch.inference_mode():
        # one clip index through warm-up, timed and MC frames: every frame the next window
        _, state = time_frames(fast, clip, 0, warmup, 0, device)
        index = warmup
        times, rates = [], []
        for _ in range(frames):
            rates.append(gemm_rate(device, reps=3, dtype=dtype))
            frame_time, state = time_frames(fast, clip, index, 0, 1, device, state)
            times += frame_time
            index += 1
        mc, mc_total = (mc_seconds(fast, clip, index, mc_frames, device, state) if mc_frames
                        else (0., 0.))
        flops = frame_conv_flops(restorer, clip.window(index), state)
    ms = 1e3 * statistics.median(times)
    rate = statistics.median(rates)
    ratios = [t * r / flops for t, r in zip(times, rates)]
    return dict(params=count_parameters(restorer)[0] / 1e6, ms=ms,
                ms_mean=1e3 * statistics.fmean(times), fps=1e3 / ms,
                mc_share=mc / mc_total if mc_total else math.nan,
                gflops=flops / 1e9, gemm_gflops=rate / 1e9, floor_ms=1e3 * flops / rate,
                ratio=statistics.median(ratios), frame_ratios=ratios, frames=frames)


def markdown_table(rows, device_name):
    """Rows of :func:`benchmark_restorer` results (plus ``variant``, ``dtype``, ``paper_ms``)."""
    lines = [f'Device: {device_name}', '',
             '| variant | dtype | params (M) | ms/frame | fps | MC share | conv GFLOP | '
             'floor ms | measured/floor | paper RTX 3090 ms |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(
            f'| {r["variant"]} | {r["dtype"]} | {r["params"]:.3f} | {r["ms"]:.1f} | '
            f'{r["fps"]:.2f} | {100 * r["mc_share"]:.1f}% | {r["gflops"]:.1f} | '
            f'{r["floor_ms"]:.1f} | {r["ratio"]:.2f}x | {r.get("paper_ms", "")} |')
    return '\n'.join(lines) + '\n'


def plot_quality_speed(rows, quality, path, title):
    """PSNR vs ms/frame, one labelled point per variant (the paper's Fig. 1 layout)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        name = r['variant'] if r['dtype'] == 'float32' else f'{r["variant"]} ({r["dtype"]})'
        if name not in quality and r['variant'] not in quality:
            continue
        psnr = quality.get(name, quality.get(r['variant']))
        ax.scatter(r['ms'], psnr, s=40, color='tab:red')
        ax.annotate(name, (r['ms'], psnr), textcoords='offset points', xytext=(5, 4))
    ax.set_xlabel('runtime per 1280x720 frame (ms)')
    ax.set_ylabel('PSNR (dB)')
    ax.set_title(title)
    ax.grid(alpha=.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
