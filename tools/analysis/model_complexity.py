"""Print parameters and FLOPs per module of configs' inference networks, side by side.

    python tools/analysis/model_complexity.py configs/mtu/mtu2_dvd.py \\
        configs/ablations/mtu2_dvd_mc_fan.py configs/ablations/mtu2_dvd_mc_flow.py

For each config: one row per module of the backbone (units one by one), the motion-compensation
part (MC = motion layers + MC head, what the paper compares in Sec. 4.4) and the total, for one
frame at ``--shape`` (default 720 1280, the paper's timing size). With several configs a summary
follows, with each config's MC parameters as a ratio to the first correlation-head config's.

FLOPs are 2 x multiply-accumulates, counted by ``mtu_toolkit.analysis.complexity`` (the
convolutions and matrix products of a real forward, plus what each MC head states it does
outside them). Element-wise ops are left out.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # a checkout

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    from mtu_toolkit.analysis.complexity import check_frame_size, complexity
    from mtu_toolkit.engine.config_loader import (
        add_cfg_options_argument, add_debug_argument, load_config, run_tool)
    from mtu_toolkit.registry import MODELS


def format_report(name, result, shape):
    lines = [f'{name}  (inference network, one frame at {shape[0]}x{shape[1]})',
             f"  {'module':<28}{'params':>12}{'GFLOPs':>12}"]
    for row, (p, f) in result['rows'].items():
        lines.append(f'  {row:<28}{p:>12,}{f / 1e9:>12.3f}')
    p, f = result['mc']
    lines.append(f"  {'MC (motion layers + head)':<28}{p:>12,}{f / 1e9:>12.3f}"
                 f"  [{result['head']}]")
    p, f = result['total']
    lines.append(f"  {'total':<28}{p:>12,}{f / 1e9:>12.3f}")
    if result['training_only']:
        lines.append(f"  {'(training only: aux layers)':<28}{result['training_only']:>12,}")
    return '\n'.join(lines)


def format_summary(results):
    """One line per config; MC parameters as a ratio to the first correlation-head config's."""
    ref = next((r for _, r in results if r['head'] == 'CorrelationMCHead'), results[0][1])
    lines = [f"{'config':<36}{'MC head':<20}{'params':>12}{'GFLOPs':>10}{'MC params':>12}"
             f"{'MC GFLOPs':>11}{'MC x':>9}"]
    for name, r in results:
        ratio = f"{r['mc'][0] / ref['mc'][0]:.1f}" if ref['mc'][0] else '-'
        lines.append(f"{name:<36}{r['head']:<20}{r['total'][0]:>12,}{r['total'][1] / 1e9:>10.2f}"
                     f"{r['mc'][0]:>12,}{r['mc'][1] / 1e9:>11.3f}{ratio:>9}")
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='+', help='config files')
    parser.add_argument('--shape', nargs=2, type=int, default=[720, 1280], metavar=('H', 'W'),
                        help='frame size (multiples of 4); default 720 1280')
    add_cfg_options_argument(parser, 'model.backbone.num_units=4 (every config)')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    try:
        check_frame_size(*shape)
    except ValueError as err:
        parser.error(f'--shape {err}')
    results = []
    for path in args.configs:
        cfg = load_config(path, args.cfg_options)
        name = osp.splitext(osp.basename(path))[0]
        result = complexity(MODELS.build(cfg.model), shape)
        print(format_report(name, result, shape) + '\n')
        results.append((name, result))
    if len(results) > 1:
        print(format_summary(results))


if __name__ == '__main__':
    code = run_tool(main)
    if code:
        sys.exit(code)
