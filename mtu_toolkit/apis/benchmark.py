"""Honest speed measurement of the MTU variants (paper protocol: batch 1, 1280x720 frames,
device synchronised before and after each frame, median over many frames after a warm-up).

Besides ms/frame the benchmark reports the share of time spent in motion compensation (motion
layer, matching, warp) and, to judge the implementation rather than the machine, the conv-FLOP
floor: the convolution FLOPs of one frame (counted from the layers) over the GEMM rate of the
same device measured in the same run, and the ratio of the measured time to that floor.
The GEMM rate is measured right before each timed frame and each frame is held to its own
floor: a shared VM's speed drifts by tens of percent between minutes, and a rate measured once
per run would report the drift as the implementation's.
"""
import math
import statistics
import time
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

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


def conv_flops(module, inputs):
    """FLOPs (multiply + add = 2) of every Conv2d / ConvTranspose2d run by ``module(*inputs)``.

    A conv costs ``2 * Cin/groups * Cout * kh * kw`` per output pixel; a transposed conv the
    same per *input* pixel (each input pixel scatters one kh x kw x Cout patch).
    """
    total = [0]

    def hook(layer, args, out):
        k = layer.kernel_size[0] * layer.kernel_size[1]
        per_pixel = 2 * layer.in_channels * layer.out_channels * k // layer.groups
        pixels = (args[0] if isinstance(layer, nn.ConvTranspose2d) else out).shape
        total[0] += per_pixel * pixels[0] * pixels[-2] * pixels[-1]

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total[0]


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


class MCTimer:
    """Accumulates the synchronised time spent in the backbone's motion compensation
    (motion layers, ``mc_head.estimate``, ``mc_head.warp``) while active."""

    def __init__(self, backbone, device):
        self.backbone, self.device, self.seconds = backbone, device, 0.

    def _timed(self, fn):
        def run(*args, **kwargs):
            synchronize(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            synchronize(self.device)
            self.seconds += time.perf_counter() - start
            return out
        return run

    @contextmanager
    def active(self):
        head, layers = self.backbone.mc_head, getattr(self.backbone, 'motion_layers', None)
        saved = [(head, 'estimate'), (head, 'warp')] + [
            (m, 'forward') for m in (layers or [])]
        # instance attributes shadow the methods; deleting them restores the class's
        for obj, name in saved:
            setattr(obj, name, self._timed(getattr(obj, name)))
        try:
            yield self
        finally:
            for obj, name in saved:
                delattr(obj, name)


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
    from ..models.restorers.padding import pad_to_multiple
    window = test_window(height, width, device)
    # half-precision models are held to the half-precision GEMM rate
    dtype = getattr(torch, restorer.infer_dtype) if restorer.infer_dtype else torch.float32
    with torch.inference_mode():
        _, state = time_frames(fast, window, warmup, 0, device)
        times, rates = [], []
        for _ in range(frames):
            rates.append(gemm_rate(device, reps=3, dtype=dtype))
            frame_time, state = time_frames(fast, window, 0, 1, device, state)
            times += frame_time
        timer = MCTimer(fast.backbone, device)
        with timer.active():
            mc_times, _ = time_frames(fast, window, 0, mc_frames, device)
        with restorer._autocast(device):
            flops = conv_flops(restorer.backbone, (pad_to_multiple(window), state, False))
    ms = 1e3 * statistics.median(times)
    rate = statistics.median(rates)
    ratios = [t * r / flops for t, r in zip(times, rates)]
    return dict(params=count_parameters(restorer)[0] / 1e6, ms=ms,
                ms_mean=1e3 * statistics.fmean(times), fps=1e3 / ms,
                mc_share=timer.seconds / sum(mc_times) if mc_times else math.nan,
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
