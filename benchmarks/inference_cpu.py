"""Where one frame's time goes on the CPU, against the conv-FLOP floor (issue 7's CPU target).

Times one variant (default MTU2) at 1280x720 as ``tools/benchmark.py`` does, in each CPU mode:
eager NCHW, frozen detail networks, the concatenation-free network compiled by torch.compile,
and the same network on the toolkit's direct convolution kernels (the tools' default; 'direct'
runs the wide stride-1 layers by Winograd, 'direct-no-winograd' runs every layer directly), then
profiles one frame of the direct modes stage by stage against the floor of the multiply-adds
each stage executes (``mtu_toolkit.analysis.stages``; each stage the median over
``--stage-frames`` profiled runs of the frame) and one of the compiled mode by group.
Prints the ratio measured / conv-FLOP floor and the target (1.5x for MTU2 on 2 cores).

With ``--baseline-conv-ext PATH`` (another build of ``mtu_toolkit._conv_cpu``, e.g. the
previous commit's ``.so``) it also times the direct form on that engine against this one, frames
alternating in one process, both fed the same frames of a panning camera (the Python side is
this checkout's for both), and prints each frame's old/new ratio and the largest difference
between their frames.
With ``--baseline-ext PATH`` (another build of ``mtu_toolkit._ext``, the motion-compensation
ops) the old side runs its ops on that build instead, alone or with ``--baseline-conv-ext``.
``--conv-isa avx2`` runs both builds' AVX2 kernels (on an AVX-512 CPU: the only way this
project has timed them).

Usage:
    python benchmarks/inference_cpu.py [--variant MTU2] [--size 1280x720] [--frames 5]
                                       [--baseline-conv-ext PATH] [--baseline-ext PATH]
                                       [--conv-isa avx2]
"""
import argparse
import contextlib
import copy
import os
import statistics
import sys
import time
from collections import defaultdict

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from mtu_toolkit.apis import init_restorer  # noqa: E402
from mtu_toolkit.analysis.benchmark import (VARIANTS, PanningClip,  # noqa: E402
                                            benchmark_restorer, check_timing_arguments,
                                            frame_size, load_build)
from mtu_toolkit.analysis.stages import format_stages, frame_stages  # noqa: E402
from mtu_toolkit.deploy import direct_conv_isa, optimize_for_inference  # noqa: E402

TARGET_RATIO = 1.5

#: profiler op name -> group of the breakdown
GROUPS = {'mtu::conv_direct 5x5/1': 'direct 5x5 convs',
          'mtu::conv_direct winograd 5x5/1': 'winograd 5x5 convs',
          'mtu::conv_direct winograd 3x3/1': 'winograd 3x3 convs',
          'mtu::conv_direct 3x3/1': 'direct 3x3 convs',
          'mtu::conv_direct 3x3/2': 'direct strided convs',
          'mtu::conv_direct 5x5/4': 'direct strided convs',
          'mtu::conv_direct transposed 4x4/2': 'direct transposed convs',
          'mkldnn::_convolution_pointwise': 'compiled convs (fused ReLU/add)',
          'mkldnn::_convolution_pointwise_': 'compiled convs (fused ReLU/add)',
          'mkldnn::_convolution_transpose_pointwise': 'transposed convs',
          'aten::mkldnn_convolution': 'eager convs',
          'aten::_convolution': 'transposed convs', 'aten::convolution': 'transposed convs',
          'WarpFunction': 'motion compensation', 'aten::linalg_vector_norm': 'motion compensation',
          'aten::div': 'motion compensation', 'aten::cat': 'cat / copies / layout',
          'aten::copy_': 'cat / copies / layout', 'aten::to_mkldnn': 'cat / copies / layout',
          'aten::to_dense': 'cat / copies / layout', 'aten::_to_dense': 'cat / copies / layout',
          'aten::add': 'adds / ReLU / clamp', 'aten::add_': 'adds / ReLU / clamp',
          'aten::relu': 'adds / ReLU / clamp', 'aten::relu_': 'adds / ReLU / clamp',
          'aten::clamp_min': 'adds / ReLU / clamp', 'aten::clamp_min_': 'adds / ReLU / clamp',
          'aten::clamp_': 'adds / ReLU / clamp'}


def breakdown(fast, clip):
    """Self time (ms) per group for one frame of ``fast``: ``clip.window(1)`` (a
    :class:`PanningClip`) after the warm-up frame ``clip.window(0)``, whose state it carries."""
    from torch.profiler import profile
    window = clip.window(1)
    with torch.inference_mode():
        _, state = fast.restore_frame(clip.window(0), None)
        with profile() as prof:
            fast.restore_frame(window, state)
    groups = defaultdict(float)
    for ev in prof.key_averages():
        if 'correlation' in ev.key:
            name = 'motion compensation'
        elif 'cpp_fused' in ev.key:  # inductor's generated kernels (with kernel profiling on)
            name = 'elementwise kernels (adds, cat, layout)'
        else:
            name = GROUPS.get(ev.key, 'other')
        groups[name] += ev.self_cpu_time_total / 1e3
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def build(restorer, mode):
    """The model timed in ``mode``."""
    if mode == 'eager':
        return restorer
    if mode == 'direct-no-winograd':
        return optimize_for_inference(restorer, mode='direct', winograd=False)
    return optimize_for_inference(restorer, mode=mode)


@contextlib.contextmanager
def swapped(owner, name, value):
    """``owner.name`` is ``value`` inside the block, and what it was again after it."""
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def engine(module):
    """Run the direct layers on ``module`` (a ``_conv_cpu`` build) inside the block: they call
    the engine through ``direct_conv.conv_ext``, read at every call."""
    from mtu_toolkit.deploy import direct_conv
    return swapped(direct_conv, 'conv_ext', module)


def ops_ext(module):
    """Run the motion-compensation ops on ``module`` (a ``_ext`` build) inside the block:
    ``mtu_toolkit.ops`` calls them through ``functions.ext``, read at every call."""
    from mtu_toolkit.ops import functions
    return swapped(functions, 'ext', module)


@contextlib.contextmanager
def builds(conv=None, ops=None):
    """The old side's builds inside the block: ``conv`` (a ``_conv_cpu`` build) and ``ops`` (an
    ``_ext`` build), each where given; this checkout's where None."""
    with contextlib.ExitStack() as stack:
        if conv is not None:
            stack.enter_context(engine(conv))
        if ops is not None:
            stack.enter_context(ops_ext(ops))
        yield


def use_conv_isa(isa, *builds):
    """Run the conv kernels of this build and of ``builds`` (other ``_conv_cpu`` builds) with
    ``isa``: 'best' (what the CPU has) or 'avx2' (the AVX2 kernels, also on an AVX-512 CPU).
    Set before any model is built: the weights are packed for the kernels that run them."""
    from mtu_toolkit.deploy import direct_conv
    for module in (direct_conv.conv_ext,) + builds:
        if module is not None:
            module.conv_direct_use_isa(isa)


def compare_engines(restorer, baseline, height, width, frames, baseline_ext=None):
    """Old (``baseline``, another build of the engine, and/or ``baseline_ext``, another build of
    the motion-compensation ops: :func:`load_build`; None: this build's) against this build:
    the direct form of the same weights on each, one frame each in turn (after one untimed
    frame each), both fed the same consecutive windows of a :class:`PanningClip` of ``height``
    x ``width`` px."""
    new = optimize_for_inference(copy.deepcopy(restorer), mode='direct')
    with builds(conv=baseline):
        old = optimize_for_inference(copy.deepcopy(restorer), mode='direct')  # (packed by it)
    clip = PanningClip(height, width, torch.device('cpu'))
    runs = {'old': (old, baseline, baseline_ext), 'new': (new, None, None)}
    states, times, outs = {}, {'old': [], 'new': []}, {}
    with torch.inference_mode():
        for i in range(frames + 1):
            window = clip.window(i)
            for name, (model, conv, ops) in runs.items():
                with builds(conv, ops):
                    start = time.perf_counter()
                    outs[name], states[name] = model.restore_frame(window, states.get(name))
                    if i:
                        times[name].append(time.perf_counter() - start)
    ratios = [o / n for o, n in zip(times['old'], times['new'])]
    diff = (outs['new'] - outs['old']).abs().max().item()
    print(f'  builds: old {1e3 * statistics.median(times["old"]):.0f} ms, new '
          f'{1e3 * statistics.median(times["new"]):.0f} ms a frame; old/new per frame '
          f'{", ".join(f"{r:.2f}" for r in ratios)} (median {statistics.median(ratios):.2f}x); '
          f'max |new - old| {diff:.1e}', flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--variant', default='MTU2', choices=[v for v, c in VARIANTS.items()
                                                               if c[1] is None])
    parser.add_argument('--size', type=frame_size, default=(1280, 720),
                        help='WIDTHxHEIGHT, multiples of 4 (default 1280x720)')
    parser.add_argument('--frames', type=int, default=5, help='timed frames (median)')
    parser.add_argument('--stage-frames', type=int, default=3,
                        help="profiled runs of the direct modes' stage frame; each stage's time "
                        'is the median over them (default 3)')
    parser.add_argument('--threads', type=int, help="CPU threads (default: torch's)")
    parser.add_argument('--modes', nargs='+', default=['eager', 'frozen', 'compile', 'direct'],
                        choices=['eager', 'frozen', 'compile', 'direct', 'direct-no-winograd'])
    parser.add_argument('--baseline-conv-ext', metavar='PATH',
                        help='another build of mtu_toolkit._conv_cpu (.so) to compare with')
    parser.add_argument('--baseline-ext', metavar='PATH',
                        help='another build of mtu_toolkit._ext (.so), the motion-compensation '
                             'ops, to compare with')
    parser.add_argument('--conv-isa', choices=['best', 'avx2'], default='best',
                        help="the conv kernels' instruction set, for this build and the "
                             "baseline: 'avx2' times the AVX2 kernels on an AVX-512 CPU")
    args = parser.parse_args()
    check_timing_arguments(parser, args)
    try:  # (loaded first: a wrong path stops the run before any timing)
        baseline = (load_build(args.baseline_conv_ext, '_conv_cpu')
                    if args.baseline_conv_ext else None)
        baseline_ext = load_build(args.baseline_ext, '_ext') if args.baseline_ext else None
    except ImportError as err:
        parser.error(str(err))
    if args.conv_isa != 'best':
        if not direct_conv_isa():
            sys.exit('the direct kernels do not run here (no extension, or a CPU without AVX2)')
        use_conv_isa(args.conv_isa, baseline)
    if args.threads:
        torch.set_num_threads(args.threads)
    # name inductor's generated kernels in the profile (read when a graph compiles)
    from torch._inductor import config as inductor_config
    inductor_config.cpp.enable_kernel_profile = True
    width, height = args.size
    restorer = init_restorer(os.path.join(ROOT, VARIANTS[args.variant][0]))
    device = torch.device('cpu')
    print(f'{args.variant} at {width}x{height}, {torch.get_num_threads()} threads')
    if baseline is not None or baseline_ext is not None:
        if not direct_conv_isa():
            sys.exit('the direct kernels do not run here (no extension, or a CPU without AVX2)')
        compare_engines(restorer, baseline, height, width, args.frames, baseline_ext)
    models = [(mode, build(restorer, mode)) for mode in args.modes]
    for name, model in models:
        r = benchmark_restorer(restorer, model, height, width, device, 1, args.frames)
        print(f'  {name:18s} {r["ms"]:8.1f} ms/frame  floor {r["floor_ms"]:7.1f} ms '
              f'({r["gflops"]:.1f} GFLOP at {r["gemm_gflops"]:.1f} GFLOP/s)  measured/floor '
              f'{r["ratio"]:.2f}x  (target {TARGET_RATIO}x)  MC {100 * r["mc_share"]:.1f}%',
              flush=True)
    clip = PanningClip(height, width, device)
    for name, model in models:
        if name in ('direct', 'direct-no-winograd') and direct_conv_isa():
            print(f'one {name} frame, stage by stage against the executed-multiply-add floor:')
            for line in format_stages(frame_stages(model, clip, frames=args.stage_frames)):
                print(f'  {line}')
        elif name == 'compile':
            print(f'one {name} frame, self time by group:')
            for group, ms in breakdown(model, clip).items():
                print(f'  {group:40s} {ms:8.1f} ms')


if __name__ == '__main__':
    main()
