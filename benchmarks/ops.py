"""Speed of the compiled motion-compensation ops against their pure-PyTorch references.

Default problem: one 720p frame at 1/4 resolution, features (1, 52, 180, 320), D = 10 (441
shifts), smoothing 5, and the warp of (1, 26, 720, 1280) features by a 180x320 displacement grid.
Each op is timed after a warm-up call as the median of ``--repeats`` calls, in the same run as
its reference, with torch using every core this process may run on.

Usage:
    python benchmarks/ops.py [--repeats 5] [--threads N] [--size 180 320] [--device cpu|cuda]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mtu_toolkit import ops  # noqa: E402

# the targets on 2 CPU cores: speed-up of the op over its reference
TARGETS = {'correlation_argmax': 5.0, 'correlation fwd+bwd': 2.0}


def median_time(fn, repeats, device):
    """Median wall time of ``fn()`` in seconds, after one warm-up call."""
    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_backward(op, f1, f2, d, grad):
    a, b = f1.detach().requires_grad_(), f2.detach().requires_grad_()
    op(a, b, d).backward(grad)


def warp_forward_backward(op, feat, disp, grad):
    x = feat.detach().requires_grad_()
    op(x, disp, 4).backward(grad)


def cases(h, w, d, smooth, device):
    """(name, op, reference) triples of no-argument callables on shared random inputs."""
    f1 = torch.nn.functional.normalize(torch.randn(1, 52, h, w, device=device), dim=1)
    f2 = torch.nn.functional.normalize(torch.randn(1, 52, h, w, device=device), dim=1)
    grad = torch.randn(1, (2 * d + 1)**2, h, w, device=device)
    feat = torch.randn(1, 26, 4 * h, 4 * w, device=device)
    disp = torch.randint(-d, d + 1, (1, 2, h, w), device=device)
    return [
        ('correlation', lambda: ops.correlation(f1, f2, d),
         lambda: ops.correlation_reference(f1, f2, d)),
        ('correlation fwd+bwd', lambda: forward_backward(ops.correlation, f1, f2, d, grad),
         lambda: forward_backward(ops.correlation_reference, f1, f2, d, grad)),
        ('correlation_argmax', lambda: ops.correlation_argmax(f1, f2, d, smooth),
         lambda: ops.correlation_argmax_reference(f1, f2, d, smooth)),
        ('warp_by_displacement', lambda: ops.warp_by_displacement(feat, disp, 4),
         lambda: ops.warp_by_displacement_reference(feat, disp, 4)),
        ('warp fwd+bwd', lambda: warp_forward_backward(ops.warp_by_displacement, feat, disp, feat),
         lambda: warp_forward_backward(ops.warp_by_displacement_reference, feat, disp, feat)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument('--size', type=int, nargs=2, default=(180, 320), metavar=('H', 'W'))
    parser.add_argument('--max-displacement', type=int, default=10)
    parser.add_argument('--smooth', type=int, default=5)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    h, w = args.size
    d = args.max_displacement
    probe = torch.zeros(1, 1, 1, 1, device=device)
    print(f'features 1x52x{h}x{w}, D={d} ({(2 * d + 1)**2} shifts), smooth={args.smooth}; '
          f'device {device}, {torch.get_num_threads()} threads, median of {args.repeats}')
    print(f'compiled ops in use: {ops.uses_extension(probe)}'
          + ('' if ops.EXT_AVAILABLE else f' ({ops.FALLBACK_REASON})'))
    print(f'{"op":<22}{"compiled ms":>12}{"reference ms":>14}{"speed-up":>10}  target')
    for name, op, reference in cases(h, w, d, args.smooth, device):
        t_op = median_time(op, args.repeats, device)
        t_ref = median_time(reference, args.repeats, device)
        ratio = t_ref / t_op
        target = TARGETS.get(name)
        verdict = '' if target is None else (f'>= {target:g}x ' +
                                             ('met' if ratio >= target else 'MISSED'))
        print(f'{name:<22}{1e3 * t_op:>12.1f}{1e3 * t_ref:>14.1f}{ratio:>9.1f}x  {verdict}')


if __name__ == '__main__':
    main()
