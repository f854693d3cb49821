"""Honest speed measurement of the MTU variants (paper protocol: batch 1, 1280x720 frames,
device synchronised before and after each frame, median over many frames after a warm-up).

Besides ms/frame the benchmark reports the share of time spent in motion compensation (motion
layer, matching, warp: the backbone's profiler ranges, read with ``torch.profiler``) and, to
judge the implementation rather than the machine, the conv-FLOP floor: the convolution FLOPs of
one frame (counted by :mod:`mtu_toolkit.analysis.complexity`) over the GEMM rate of the same
device measured in the same run, and the ratio of the measured time to that floor.
The GEMM rate is measured right before each timed frame and each frame is held to its own
floor: a shared VM's speed drifts by tens of percent between minutes, and a rate measured once
per run would report the drift as the implementation's.
"""
import importlib.util
import math
import statistics
import time

import numpy as np
import torch

from .complexity import frame_conv_flops

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


def mc_seconds(restorer, window, frames, device, state=None):
    """Seconds of motion compensation in ``frames`` frames of ``restorer``: the time inside the
    backbone's profiler ranges named :data:`~mtu_toolkit.models.backbones.mtu_net.MC_RANGE`
    (motion layer, matching, warp), read from ``torch.profiler`` (device time on CUDA).

    Returns:
        tuple: ``(mc_seconds, frame_seconds)`` summed over the frames.
    """
    from torch.profiler import ProfilerActivity, profile

    from ..models.backbones.mtu_net import MC_RANGE
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                          if device.type == 'cuda' else [])
    with profile(activities=activities) as prof:
        times, _ = time_frames(restorer, window, 0, frames, device, state)
    ranges = [e for e in prof.events() if e.name == MC_RANGE]
    micros = sum(e.device_time_total if device.type == 'cuda' else e.cpu_time_total
                 for e in ranges)
    return micros / 1e6, sum(times)


def time_frames(restorer, window, warmup, frames, device, state=None):
    """Per-frame synchronised times (s) of ``restorer.restore_frame`` over ``frames`` frames,
    carrying the recurrent state (starting from ``state``), after ``warmup`` frames."""
    times = []
    for i in range(warmup + frames):
        synchronize(device)
        start = time.perf_counter()
        _, state = restorer.restore_frame(window, state)
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times, state


def alternating_medians(calls, repeats):
    """{name: median seconds} of no-argument callables called in turn (so that a machine
    getting busier or quieter moves them alike), after one warm-up round."""
    for fn in calls.values():
        fn()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def load_build(path, name):
    """Another build of one of the compiled extensions (``name``: its module name, ``'_ext'``
    or ``'_conv_cpu'``), loaded from the file ``path`` beside the installed one: the old side
    of an old-against-new benchmark. Raises ImportError naming ``path`` where it is missing or
    not a build of that extension."""
    spec = importlib.util.spec_from_file_location(name, path)
    try:
        if spec is None:
            raise ImportError('not a Python extension file name')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (ImportError, OSError) as err:
        raise ImportError(f'{path}: cannot load it as a build of mtu_toolkit.{name} '
                          f'({str(err).splitlines()[0] if str(err) else type(err).__name__})')
    return module


def test_window(height, width, device, seed=0):
    """A (1, 5, 3, H, W) window of real image content moving 3 px per frame (so that the
    matching has real work to do), in [0, 1]."""
    from skimage import data
    import cv2
    img = cv2.resize(data.astronaut(), (width + 16, height + 16), interpolation=cv2.INTER_AREA)
    frames = [img[8 + 0:8 + height, 3 * k:3 * k + width] for k in range(5)]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255)
    return x.unsqueeze(0).to(device)


def benchmark_restorer(restorer, fast, height, width, device, warmup=3, frames=20,
                       mc_frames=3):
    """Measure one model.

    Args:
        restorer (MTURestorer): eager model in eval mode on ``device`` (FLOPs counted on it).
        fast (MTURestorer): the model actually timed (e.g. :func:`optimize_for_inference`).
        height, width (int): frame size.
        warmup, frames (int): untimed and timed frames; the median is reported.
        mc_frames (int): extra instrumented frames for the motion-compensation share.

    Returns:
        dict: params (M), ms (median ms/frame), ms_mean, fps, mc_share, gflops (conv FLOPs per
        frame), gemm_gflops (median rate), floor_ms (at that rate), ratio (the median over
        frames of each frame's time over the floor at the GEMM rate measured just before it),
        frame_ratios (per timed frame), frames.
    """
    from ..models import count_parameters
    window = test_window(height, width, device)
    # half-precision models are held to the half-precision GEMM rate
    dtype = restorer.autocast_dtype(torch.device(device)) or torch.float32
    with torch.inference_mode():
        _, state = time_frames(fast, window, warmup, 0, device)
        times, rates = [], []
        for _ in range(frames):
            rates.append(gemm_rate(device, reps=3, dtype=dtype))
            frame_time, state = time_frames(fast, window, 0, 1, device, state)
            times += frame_time
        mc, mc_total = mc_seconds(fast, window, mc_frames, device) if mc_frames else (0., 0.)
        flops = frame_conv_flops(restorer, window, state)
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
