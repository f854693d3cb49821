"""The toolkit's CPU paths next to what a user would pick instead: ONNX Runtime and OpenVINO on
the toolkit's own ONNX export (``mtu_toolkit.deploy.export_onnx``).

One variant (default MTU2) at 1280x720: the toolkit's default CPU model (``tool_model``: the
direct kernels where the CPU has AVX-512 or AVX2), its eager PyTorch model, and every peer
runtime found, all in one process on the same threads. Every timed frame restores the same
window of a panning camera (real image content, ``analysis.benchmark.PanningClip``: its
``window(1)``) from the same recurrent state, that of the window's previous frame (after
``window(0)``), so that the matching finds the camera's motion; the runtimes take turns frame
by frame, so the drift of a shared machine hits all alike. Prints the median ms a frame, each
one's ratio to the toolkit default, and the largest difference of its output from the eager
model's.

The peers are optional (``requirements-benchmarks.txt``), never requirements of the package: a
runtime that is not installed is skipped with a line that says so. Settings: ONNX Runtime with
all graph optimisations (``ORT_ENABLE_ALL``) on its CPU provider; OpenVINO on 'CPU' with f32
inference precision (it would pick bf16 on CPUs that have it) and the latency hint; both with
``--threads`` threads.

Usage:
    python benchmarks/peers_cpu.py [--variant MTU2] [--size 1280x720] [--frames 5] [--warmup 1]
                                   [--threads 2] [--runtimes direct eager onnxruntime openvino]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from mtu_toolkit.analysis.benchmark import (VARIANTS, PanningClip,  # noqa: E402
                                            check_timing_arguments, frame_size)
from mtu_toolkit.apis import init_restorer  # noqa: E402
from mtu_toolkit.deploy import direct_conv_isa, export_onnx, tool_model  # noqa: E402
from mtu_toolkit.models.backbones.mtu_net import MTUState  # noqa: E402

RUNTIMES = ('direct', 'eager', 'onnxruntime', 'openvino')


def torch_runner(model):
    """frame(window, state) -> out of a restorer (its own ``restore_frame``)."""
    def run(window, state):
        with torch.inference_mode():
            out, _ = model.restore_frame(window, MTUState(*state))
        return out
    return run


def onnx_inputs(names, window, state):
    restored, feat, motion = state
    values = [window, restored, feat, *[m for m in motion if m is not None]]
    return {n: v.numpy() for n, v in zip(names, values)}


def ort_runner(path, threads):
    """ONNX Runtime on its CPU provider, or (None, why not)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, 'onnxruntime is not installed (pip install -r requirements-benchmarks.txt)'
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
    names = [i.name for i in sess.get_inputs()]

    def run(window, state):
        return torch.from_numpy(sess.run(['out'], onnx_inputs(names, window, state))[0])
    return run, f'onnxruntime {ort.__version__} (ORT_ENABLE_ALL, {threads} threads)'


def openvino_runner(path, threads):
    """OpenVINO on 'CPU' (f32), or (None, why not)."""
    try:
        import openvino as ov
    except ImportError:
        return None, 'openvino is not installed (pip install -r requirements-benchmarks.txt)'
    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), 'CPU', {
        'INFERENCE_NUM_THREADS': threads, 'INFERENCE_PRECISION_HINT': 'f32',
        'PERFORMANCE_HINT': 'LATENCY'})
    names = [next(iter(p.get_names())) for p in compiled.inputs]
    request = compiled.create_infer_request()
    out_port = compiled.output('out')

    def run(window, state):
        request.infer(onnx_inputs(names, window, state))
        return torch.from_numpy(np.array(request.get_tensor(out_port).data))
    version = ov.__version__.split('-')[0]
    return run, f'openvino {version} (CPU, f32, latency hint, {threads} threads)'


def main():
    # the docstring's first paragraph: its first sentence runs over two lines
    parser = argparse.ArgumentParser(
        description=' '.join(__doc__.split('\n\n')[0].split()).replace('``', ''))
    parser.add_argument('--variant', default='MTU2',
                        choices=[v for v, c in VARIANTS.items() if c[1] is None])
    parser.add_argument('--size', type=frame_size, default=(1280, 720),
                        help='WIDTHxHEIGHT, multiples of 4 (default 1280x720)')
    parser.add_argument('--frames', type=int, default=5, help='timed frames of each runtime')
    parser.add_argument('--warmup', type=int, default=1, help='untimed frames of each first')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runtimes', nargs='+', default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument('--onnx-dir', help='where to write the export (default: a temporary '
                        'directory, removed at the end)')
    args = parser.parse_args()
    check_timing_arguments(parser, args)
    peers = [r for r in ('onnxruntime', 'openvino') if r in args.runtimes]
    # before the model and the minutes of the export, not after them
    if args.onnx_dir and os.path.exists(args.onnx_dir) and not os.path.isdir(args.onnx_dir):
        parser.error(f'--onnx-dir {args.onnx_dir}: is a file, not a folder')
    if args.onnx_dir and peers:
        try:
            os.makedirs(args.onnx_dir, exist_ok=True)
        except OSError as err:
            parser.error(f'--onnx-dir {args.onnx_dir}: {err.strerror or err}')
    width, height = args.size
    torch.set_num_threads(args.threads)

    restorer = init_restorer(os.path.join(ROOT, VARIANTS[args.variant][0]))
    clip = PanningClip(height, width, torch.device('cpu'))
    window = clip.window(1)
    with torch.inference_mode():
        # the state of the window's previous frame: the matching finds the camera's motion
        _, st = restorer.restore_frame(clip.window(0), None)
    state = (st.restored, st.feat, list(st.motion))
    with torch.inference_mode():
        reference, _ = restorer.restore_frame(window, MTUState(*state))

    runners, skipped = {}, []
    if 'direct' in args.runtimes:
        if direct_conv_isa():
            runners['direct'] = (torch_runner(tool_model(restorer)),
                                 f'toolkit default: direct kernels ({direct_conv_isa()})')
        else:
            skipped.append('direct: the direct kernels do not run on this CPU (the toolkit '
                           'default here is the eager model)')
    if 'eager' in args.runtimes:
        runners['eager'] = (torch_runner(restorer), 'toolkit eager PyTorch model')
    tmp = None
    if peers:
        tmp = None if args.onnx_dir else tempfile.TemporaryDirectory(prefix='mtu_peers_')
        out_dir = args.onnx_dir or tmp.name
        path = os.path.join(out_dir, f'{args.variant.lower()}_{width}x{height}.onnx')
        start = time.perf_counter()
        export_onnx(restorer, path, height, width)
        print(f'exported {path} in {time.perf_counter() - start:.0f} s')
        for name in peers:
            make = ort_runner if name == 'onnxruntime' else openvino_runner
            run, what = make(path, args.threads)
            if run is None:
                skipped.append(f'{name}: {what}')
            else:
                runners[name] = (run, what)

    print(f'{args.variant} at {width}x{height}, batch 1, {args.threads} threads, torch '
          f'{torch.__version__}; median of {args.frames} frames after {args.warmup} warm-up, '
          'the runtimes taking turns frame by frame, same window and state')
    for line in skipped:
        print(f'skipped: {line}')
    diffs = {}
    for name, (run, _) in runners.items():
        diffs[name] = (run(window, state)[..., :height, :width] - reference).abs().max().item()
        for _ in range(args.warmup - 1):
            run(window, state)
    times = {name: [] for name in runners}
    for _ in range(args.frames):
        for name, (run, _) in runners.items():
            start = time.perf_counter()
            run(window, state)
            times[name].append(time.perf_counter() - start)
    if tmp is not None:
        tmp.cleanup()

    base_name = 'direct' if 'direct' in times else next(iter(times), None)
    if base_name is None:
        print('nothing to time')
        return 1
    base = statistics.median(times[base_name])
    print(f'\n| runtime | what | ms/frame | x {base_name} | max abs diff from eager |')
    print('|---|---|---|---|---|')
    for name, (_, what) in runners.items():
        ms = 1e3 * statistics.median(times[name])
        print(f'| {name} | {what} | {ms:.0f} | {ms / (1e3 * base):.2f}x | {diffs[name]:.1e} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
