"""The CPU convolution kernels layer by layer, against PyTorch's convolution (oneDNN).

Times each layer shape of an MTU unit at 1280x720 (or ``--size``) with PyTorch's ``conv2d``
(``conv_transpose2d``) + in-place ReLU (the reference, as the toolkit's eager layers run it),
the direct kernel, and Winograd F(2x2, KxK) and F(4x4, KxK) (stride-1 layers; the transposed
4x4 / 2 layers: F(4x4, 3x3) on their 4 output phases), all on the same input and alternating
call by call, so that the VM's drift hits every variant alike; prints the median ms, the
speed-up over the reference and the largest difference from it relative to the output's scale.
The numbers behind ``WINOGRAD_TILE`` and ``WINOGRAD_MIN_CHANNELS`` in
``mtu_toolkit/deploy/direct_conv.py``.

``--broadcasts`` times each engine variant twice, with the AVX-512 kernels' weights
broadcast by every multiply-add (``embedded``) and once into a register (``registers``), in
turns: the numbers behind the engine's choice by CPU (``conv_direct_broadcasts``; registers on
AMD CPUs, embedded on others). ``--prefetch`` likewise with the kernels' next input rows and
output lines fetched ahead into L1 (``l1``, the default) and into L2 only (``l2``;
``conv_direct_prefetch``). Either way the outputs are the same bit for bit (checked).

Then the sum of a layer's inputs (the motion layer's ``feat + base``, two 26-channel
features): ``torch.add`` into a kept buffer against the engine's ``sum_inputs``, in rotated
turns, each call after 600 MB written elsewhere so that its inputs come from memory, as in a
frame.

Usage:
    python benchmarks/conv_cpu.py [--size 1280x720] [--repeats 7] [--threads N]
                                  [--broadcasts | --prefetch]
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mtu_toolkit.analysis.benchmark import (alternating_medians,  # noqa: E402
                                             check_timing_arguments, frame_size)
from mtu_toolkit.deploy import (direct_conv_broadcasts, direct_conv_isa,  # noqa: E402
                                 direct_conv_prefetch)
from mtu_toolkit.deploy.conv_engine import conv_ext as ext  # noqa: E402

#: name, input channels, output channels, kernel size, stride, resolution divisor (ch = 26)
LAYERS = [('base_conv 3->26 3x3', 3, 26, 3, 1, 1),
          ('inp_prev_conv 15->26 3x3', 15, 26, 3, 1, 1),
          ('enc1 52->26 5x5', 52, 26, 5, 1, 1),
          ('residual block 52->52 3x3', 52, 52, 3, 1, 4),
          ('out_conv 26->3 3x3', 26, 3, 3, 1, 1),
          ('enc2 26->26 3x3/2', 26, 26, 3, 2, 1),
          ('motion 26->52 5x5/4', 26, 52, 5, 4, 1),
          ('dec1 52->26 4x4/2 transposed', 52, 26, 4, 2, 4),
          ('dec2 26->26 4x4/2 transposed', 26, 26, 4, 2, 2)]

#: variant -> Winograd tile of conv_direct (None: PyTorch); the strided layers: direct only;
#: the transposed (4x4 / 2, its input at the divisor's size): direct (its own kernel) and
#: F(4x4) (a 3x3 conv of its 4 output phases by F(4x4, 3x3))
VARIANTS = {'pytorch': None, 'direct': 0, 'F(2x2)': 2, 'F(4x4)': 4}

#: the engine's settings a run can time both ways: name -> its two modes (each the same
#: outputs); ``conv_direct_use_<name>(mode)`` sets one, ``'auto'`` restores the default
SETTINGS = {'broadcasts': ('embedded', 'registers'), 'prefetch': ('l2', 'l1')}


def use_setting(setting, mode):
    """Set the engine's ``setting`` (a key of :data:`SETTINGS`) to ``mode`` (or 'auto')."""
    getattr(ext, f'conv_direct_use_{setting}')(mode)


def with_setting(call, setting, mode):
    """``call`` run with the engine's ``setting`` at ``mode``."""
    def run():
        use_setting(setting, mode)
        return call()
    return run


def run_layer(cin, cout, k, stride, height, width, repeats, setting=None):
    """{variant: (median seconds, max |out - reference| / max |reference|)}; with a
    ``setting`` (a key of :data:`SETTINGS`) each engine variant once in each of its modes
    ('<variant> <mode>')."""
    torch.manual_seed(0)
    transposed = k == 4
    x = torch.rand(1, cin, height, width)
    weight = torch.randn(*((cin, cout) if transposed else (cout, cin)), k, k) / (
        cin * k * k) ** 0.5
    bias = torch.randn(cout) * 0.1
    # the 5x5 / 4 motion layer pads 1 (the transposed 4x4 / 2 too), the others k // 2
    pad = k // 2 if stride < 4 and not transposed else 1
    size = [ext.conv_direct_output_size(s, k, stride, pad, transposed) for s in (height, width)]
    out = torch.empty(1, cout, *size)
    conv = F.conv_transpose2d if transposed else F.conv2d
    calls = {}
    for name, tile in VARIANTS.items():
        if tile is None:
            # ReLU in place, as the eager layers (models/layers.py): an out-of-place one
            # would add a pass over a fresh output to the reference's time
            calls[name] = lambda: torch.relu_(conv(x, weight, bias, stride, pad))
        elif tile == 0 or stride == 1 or transposed and tile == 4:
            packed = ext.conv_direct_pack(weight, transposed, winograd=tile)
            # into the same output buffer, as the network's reused buffers
            call = (lambda p=packed, t=tile: ext.conv_direct(
                [x], p, bias, None, cout, stride, pad, transposed, True, out, winograd=t))
            if setting is None:
                calls[name] = call
            else:
                first, second = SETTINGS[setting]
                calls[f'{name} {first}'] = with_setting(call, setting, first)
                calls[f'{name} {second}'] = with_setting(call, setting, second)
    try:
        with torch.inference_mode():
            ref = calls['pytorch']()
            scale = ref.abs().max().item()
            results = {name: fn().clone() for name, fn in calls.items()}
            errors = {name: (r - ref).abs().max().item() / scale for name, r in results.items()}
            if setting is not None:
                first, second = SETTINGS[setting]
                for name in calls:
                    if name.endswith(f' {second}') and not torch.equal(
                            results[name], results[name[:-len(second)] + first]):
                        raise SystemExit(f'{name}: the two {setting} modes differ')
            times = alternating_medians(calls, repeats)
    finally:
        if setting is not None:  # (back to the default)
            use_setting(setting, 'auto')
    return {name: (times[name], errors[name]) for name in calls}


def run_sum(height, width, repeats, channels=26):
    """{'torch.add': median seconds, 'sum_inputs': ...}: feat + base into a kept buffer, the
    caches flushed before each call."""
    a, b = (torch.rand(1, channels, height, width) for _ in range(2))
    total = torch.empty_like(a)
    flush = torch.empty(600 * 2**20 // 4)
    calls = {'torch.add': lambda: torch.add(a, b, out=total),
             'sum_inputs': lambda: ext.sum_inputs([a, b], total)}
    times = alternating_medians(calls, repeats, before=lambda: flush.fill_(1.0))
    if not torch.equal(total, a + b):
        raise SystemExit('sum_inputs differs from torch.add')
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=frame_size, default=(1280, 720),
                        help='frame WIDTHxHEIGHT, multiples of 4 (default 1280x720)')
    parser.add_argument('--repeats', type=int, default=7, help='timed calls of each (median)')
    parser.add_argument('--threads', type=int, help="CPU threads (default: torch's)")
    both = parser.add_mutually_exclusive_group()
    both.add_argument('--broadcasts', action='store_true',
                      help='time each engine variant with embedded and register broadcasts '
                           '(AVX-512), in turns')
    both.add_argument('--prefetch', action='store_true',
                      help='time each engine variant fetching ahead into L2 and into L1, in '
                           'turns')
    args = parser.parse_args()
    check_timing_arguments(parser, args)
    if not direct_conv_isa():
        sys.exit('the direct kernels do not run here (no extension, or a CPU without AVX2)')
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.broadcasts and direct_conv_isa() != 'avx512':
        sys.exit('--broadcasts: the kernels run AVX2 here, which has no embedded broadcasts')
    width, height = args.size
    setting = 'broadcasts' if args.broadcasts else 'prefetch' if args.prefetch else None
    broadcasts = direct_conv_broadcasts()
    broadcast = f'weights broadcast: {broadcasts}, ' if broadcasts else ''
    print(f'{direct_conv_isa()} kernels ({broadcast}fetched ahead into '
          f'{direct_conv_prefetch().upper()}), {torch.get_num_threads()} threads, '
          f'{width}x{height}; '
          'ms (speed-up over PyTorch, max difference from it / output scale)')
    for name, cin, cout, k, stride, div in LAYERS:
        res = run_layer(cin, cout, k, stride, height // div, width // div, args.repeats,
                        setting)
        ref_time = res['pytorch'][0]
        cells = [f'{v} {t * 1e3:7.1f} ({ref_time / t:4.2f}x, {e:.0e})'
                 for v, (t, e) in res.items()]
        print(f'{name:28s} ' + '  '.join(cells), flush=True)
    sums = run_sum(height, width, args.repeats)
    print(f'feat + base (2 x 26 channels, inputs from memory): torch.add '
          f'{sums["torch.add"] * 1e3:.1f} ms, sum_inputs {sums["sum_inputs"] * 1e3:.1f} ms '
          f'({sums["sum_inputs"] / sums["torch.add"]:.2f}x)')


if __name__ == '__main__':
    main()
