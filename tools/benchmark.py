"""Time the MTU variants the honest way and compare them with the conv-FLOP floor.

    python tools/benchmark.py [--variants MTU1 MTU2 ...] [--size 1280x720] [--device cpu|cuda]
                              [--warmup 3] [--frames 20] [--fp16] [--compile|--eager]
                              [--quality quality.json] [--out-dir work_dirs/benchmark]
                              [--stages [--stage-frames 3]] [--cpu-isa best|avx2]

Batch 1, real image content with a panning camera (``analysis.benchmark.PanningClip``: every
frame the next one, so that the matching finds motion), device synchronised before and after
every frame, median over ``--frames`` frames after ``--warmup``. Prints and writes
``benchmark.md`` and ``benchmark.json`` (params, ms/frame, fps, motion-compensation share, conv
GFLOP, floor = FLOPs / GEMM rate measured in the same run, measured/floor) and, with
``--quality`` (JSON {variant: PSNR}), a quality-vs-speed plot ``quality_speed.png`` like the
paper's Fig. 1. ``--fp16`` adds a float16-autocast run of each variant (CUDA). On the CPU the
model timed is the one the tools run: the toolkit's direct convolution kernels (with Winograd)
where the CPU has AVX-512 or AVX2 (``--eager``: the plain PyTorch model; ``--compile``: the
concatenation-free network compiled by ``torch.compile`` during the warm-up).
MTU2-hp (float16) is skipped on the CPU. ``--stages`` (CPU, direct kernels) also profiles one
frame of each variant ``--stage-frames`` times and prints its time stage by stage (convolutions
by kind, correlation, warp, the rest of the motion compensation, glue; each the median over the
profiled runs) against the floor of the multiply-adds each stage executes
(``mtu_toolkit.analysis.stages``), each held to the CPU targets (``TARGETS``: a verdict a stage,
and a table of them, a row a variant, at the end of ``benchmark.md``). ``--cpu-isa avx2`` runs
the conv engine's and the MC ops' AVX2 kernels on an AVX-512 CPU (the device line says
"forced"): a proxy for an AVX2-only CPU, not one (its caches and its GEMM floor are the
AVX-512 CPU's). The peer runtimes (ONNX Runtime, OpenVINO) on the toolkit's ONNX export:
``benchmarks/peers_cpu.py``.

Arguments are checked before any timing. Exit codes: 0 done, 2 bad arguments (among them a
``--device`` this machine does not have, a ``--quality`` file that cannot be read, an
``--out-dir`` that is a file, a ``--cpu-isa`` the CPU kernels cannot run).
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import platform
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    import torch

    from mtu_toolkit.apis import InferenceError, init_restorer, parse_device
    from mtu_toolkit.analysis.benchmark import (
        PanningClip, VARIANTS, benchmark_restorer, check_timing_arguments, frame_size,
        markdown_table, plot_quality_speed)
    from mtu_toolkit.analysis.stages import format_stages, frame_stages, targets_markdown
    from mtu_toolkit.deploy import (add_model_arguments, direct_conv_broadcasts,
                                    direct_conv_isa, direct_conv_prefetch, tool_model)
    from mtu_toolkit.deploy.conv_engine import conv_ext
    from mtu_toolkit.engine.checkpoint import atomic_write_text
    from mtu_toolkit.engine.config_loader import add_debug_argument, run_tool

DEFAULT_VARIANTS = ['MTU1', 'MTU2', 'MTU2-hp', 'MTU4', 'MTU10', 'MTU10-L']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark the MTU variants')
    parser.add_argument('--variants', nargs='+', default=DEFAULT_VARIANTS,
                        choices=list(VARIANTS), help='variants to time (default: all)')
    parser.add_argument('--size', type=frame_size, default=(1280, 720),
                        help='WIDTHxHEIGHT, multiples of 4 (default 1280x720)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='cpu, cuda, cuda:1, ... (default: cuda when available; one this '
                        'machine does not have exits 2)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed frames first')
    parser.add_argument('--frames', type=int, default=20, help='timed frames (median)')
    parser.add_argument('--threads', type=int, help='CPU threads (default: torch\'s)')
    parser.add_argument('--fp16', action='store_true', help='also time float16 autocast (CUDA)')
    add_model_arguments(parser, 'time')
    parser.add_argument('--quality', help='JSON {variant: PSNR} for the quality-vs-speed plot')
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--stages', action='store_true',
                        help='CPU, direct kernels: a profiled frame per variant, stage by '
                        'stage against the executed-multiply-add floor')
    parser.add_argument('--stage-frames', type=int, default=3,
                        help='with --stages: profiled runs of that frame; each stage\'s time is '
                        'the median over them (default 3)')
    parser.add_argument('--cpu-isa', choices=['best', 'avx2'], default='best',
                        help='CPU: the conv kernels and the MC ops of this instruction set '
                        '(avx2 on an AVX-512 CPU: a proxy for an AVX2-only CPU, not one; '
                        'default: the best this CPU has)')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    check_timing_arguments(parser, args)
    return args


@contextlib.contextmanager
def cpu_isa(isa, device):
    """The CPU kernels (the conv engine's and the MC ops') of ``isa`` ('best' or 'avx2') for
    the models built inside (the engine packs their weights for its kernels), the best after;
    a one-line ValueError where they cannot run."""
    if isa == 'best':
        yield
        return
    from mtu_toolkit.ops.extension import ext as ops_ext
    if device.type != 'cpu':
        raise ValueError(f'--cpu-isa {isa}: the CPU kernels, but --device is {device}')
    if not direct_conv_isa() or ops_ext is None:
        raise ValueError(f'--cpu-isa {isa}: the compiled CPU kernels do not run on this CPU')
    try:
        conv_ext.conv_direct_use_isa(isa)
        ops_ext.cpu_use_isa(isa)
    except RuntimeError as err:  # (this CPU has no AVX2)
        conv_ext.conv_direct_use_isa('best')
        raise ValueError(f'--cpu-isa {isa}: {str(err).splitlines()[0]}') from None
    try:
        yield
    finally:
        conv_ext.conv_direct_use_isa('best')
        ops_ext.cpu_use_isa('best')


WINOGRAD_NOTE = ('\nThe floor counts the convolutions\' direct FLOPs; the Winograd layers do fewer '
                 'multiply-adds (F(4x4, 3x3): 36 of 144, F(4x4, 5x5): 64 of 400 per 4x4 output '
                 'tile and channel pair; the transposed layers, a 3x3 conv of their 4 output '
                 'phases by F(4x4, 3x3): 9 of 16 per input pixel), so measured/floor can fall '
                 'below 1.\n')


def model_kind(fast, restorer, args):
    """What was timed: 'compiled', 'direct kernels + Winograd', 'direct kernels' or 'eager'
    (CUDA: eager, cuDNN autotuned)."""
    if args.compile:
        return 'compiled'
    if fast is restorer:
        return 'eager'
    winograd = any(getattr(m, 'winograd', False) for m in fast.modules())
    return 'direct kernels + Winograd' if winograd else 'direct kernels'


def device_name(device, forced=False):
    """The device line; ``forced``: ``--cpu-isa`` chose other kernels than the CPU's best."""
    if device.type == 'cuda':
        return f'{torch.cuda.get_device_name(device)} (torch {torch.__version__})'
    kernels = ''
    if direct_conv_isa():  # which of the engine's kernels ran (their speed differs by CPU)
        kernels = f'; conv kernels {direct_conv_isa()}' + (' (forced)' if forced else '')
        if broadcasts := direct_conv_broadcasts():
            kernels += f', weights broadcast: {broadcasts}'
        kernels += f', fetched ahead into {direct_conv_prefetch().upper()}'
    return (f'CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} '
            f'threads (torch {torch.__version__}{kernels})')


def runs(args, device):
    """(variant, config, dtype) to time, and why others are skipped."""
    todo, skipped = [], []
    for name in args.variants:
        config, dtype, _ = VARIANTS[name]
        dtypes = [dtype] if dtype else [None] + (['float16'] if args.fp16 else [])
        for d in dtypes:
            if d == 'float16' and device.type != 'cuda':
                skipped.append(f'{name} float16: half precision is timed on CUDA only')
                continue
            todo.append((name, osp.join(ROOT, config), d))
    return todo, skipped


def read_quality(path):
    """{variant: PSNR} of a ``--quality`` JSON file, or a one-line ValueError naming it."""
    try:
        with open(path) as f:
            quality = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f'--quality {path}: not JSON ({err})') from None
    if not isinstance(quality, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in quality.values()):
        raise ValueError(f'--quality {path}: expected {{"<variant>": <PSNR in dB>, ...}}')
    return quality


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = parse_device(args.device)
        quality = None
        if args.quality:
            quality = read_quality(args.quality)
        # before any timing: a bad --out-dir would otherwise be found minutes later
        if osp.exists(args.out_dir) and not osp.isdir(args.out_dir):
            raise ValueError(f'--out-dir {args.out_dir}: is a file, not a folder')
        os.makedirs(args.out_dir, exist_ok=True)
        todo, skipped = runs(args, device)
        for line in skipped:
            print(f'skipped: {line}')
        width, height = args.size
        rows = []
        best_isa = direct_conv_isa()
        with cpu_isa(args.cpu_isa, device):
            for name, config, dtype in todo:
                restorer = init_restorer(config, None, device, infer_dtype=dtype)
                fast = tool_model(restorer, compile=args.compile, eager=args.eager)
                res = benchmark_restorer(restorer, fast, height, width, device, args.warmup,
                                         args.frames)
                res.update(variant=name, dtype=dtype or 'float32', paper_ms=VARIANTS[name][2],
                           size=f'{width}x{height}', model=model_kind(fast, restorer, args))
                rows.append(res)
                print(f'{name:8s} {res["dtype"]:8s} {res["params"]:.3f}M  {res["ms"]:9.1f} ms  '
                      f'{res["fps"]:7.2f} fps  MC {100 * res["mc_share"]:4.1f}%  '
                      f'{res["gflops"]:7.1f} GFLOP  floor {res["floor_ms"]:8.1f} ms '
                      f'(GEMM {res["gemm_gflops"]:.1f} GFLOP/s)  measured/floor '
                      f'{res["ratio"]:.2f}x', flush=True)
                if args.stages and device.type == 'cpu' and res['model'].startswith('direct'):
                    res['stages'] = frame_stages(fast, PanningClip(height, width, device),
                                                 frames=args.stage_frames)
                    print('\n'.join(f'  {line}' for line in format_stages(res['stages'])),
                          flush=True)
                del restorer, fast
            name = device_name(device, forced=direct_conv_isa() != best_isa)
    except (InferenceError, OSError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return getattr(err, 'exit_code', 2)
    table = markdown_table(rows, f'{name}, {width}x{height}, batch 1, median of {args.frames} '
                                 f'frames after {args.warmup} warm-up')
    if any('Winograd' in r['model'] for r in rows):
        table += WINOGRAD_NOTE
    targets = targets_markdown(rows)
    if targets:
        table += ('\nThe CPU targets (`--stages`: each stage of the profiled frame over the floor '
                  'of what it executes, `mtu_toolkit.analysis.stages.TARGETS`):\n\n' + targets)
    print('\n' + table)
    atomic_write_text(osp.join(args.out_dir, 'benchmark.md'), table)
    atomic_write_text(osp.join(args.out_dir, 'benchmark.json'),
                      json.dumps(dict(device=name, rows=rows, skipped=skipped), indent=2))
    if quality:
        plot_quality_speed(rows, quality, osp.join(args.out_dir, 'quality_speed.png'),
                           f'{name.split(" (")[0]}, {width}x{height}')
    print(f'written to {args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
