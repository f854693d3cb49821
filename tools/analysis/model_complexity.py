"""Print parameters and FLOPs per module of configs' inference networks, side by side.

    python tools/analysis/model_complexity.py configs/mtu/mtu2_dvd.py \\
        configs/ablations/mtu2_dvd_mc_fan.py configs/ablations/mtu2_dvd_mc_flow.py

For each config: one row per module of the backbone (units one by one), the motion-compensation
part (MC = motion layers + MC head, what the paper compares in Sec. 4.4) and the total, for one
frame at ``--shape`` (default 720 1280, the paper's timing size). With several configs a summary
follows, with each config's MC parameters as a ratio to the first correlation-head config's.

FLOPs are 2 x multiply-accumulates: convolutions and matrix products counted by
``torch.utils.flop_counter`` during a real forward, plus what the MC heads do outside them
(cost volumes, per-pixel filtering), counted from their shapes. Element-wise ops are left out.
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # a checkout

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from mtu_toolkit.engine.config_loader import (  # noqa: E402
    add_cfg_options_argument, add_debug_argument, load_config, run_tool)
from mtu_toolkit.models.mc_heads import CorrelationMCHead  # noqa: E402
from mtu_toolkit.registry import MODELS  # noqa: E402

MC_GROUPS = ('motion_layers', 'mc_head')


def head_estimate_macs(head, cur):
    """MACs of one ``head.estimate`` outside convolutions, for motion features ``cur``."""
    h, w = cur.shape[-2:]
    if hasattr(head, 'estimate_macs'):
        return head.estimate_macs(h, w)
    if isinstance(head, CorrelationMCHead):  # (2D+1)^2 dot products of 2ch per position
        return (2 * head.max_displacement + 1) ** 2 * cur.shape[1] * h * w
    return 0


def head_warp_macs(head, feat):
    """MACs of one ``head.warp`` of ``feat`` outside convolutions (gathers count as 0)."""
    return head.warp_macs(*feat.shape[-2:]) if hasattr(head, 'warp_macs') else 0


def _groups(backbone):
    """Row name of every parameterised or counted module: units one by one, others by child."""
    groups = OrderedDict()
    for name, child in backbone.named_children():
        if name == 'units':
            for i, _ in enumerate(child):
                groups[f'units.{i}'] = f'units.{i}'
        else:
            groups[name] = name
    return groups


def _group_of(module_name, groups):
    for prefix in groups:
        if module_name == prefix or module_name.startswith(prefix + '.'):
            return prefix
    return None


def complexity(model, shape):
    """Per-module ``(params, flops)`` of ``model``'s inference network for one frame.

    Args:
        model (nn.Module): a restorer (with ``backbone``) or a frame model like ``MTUNet``.
        shape (tuple[int]): (H, W), multiples of 4.

    Returns:
        dict: ``rows`` OrderedDict name -> (params, flops); ``training_only`` params of layers
        not in the inference network; ``mc`` (params, flops) of the MC part; ``total``.
    """
    backbone = getattr(model, 'backbone', model).eval()
    groups = _groups(backbone)
    inference = {id(p) for p in getattr(backbone, 'inference_parameters',
                                        backbone.parameters)()}
    params = OrderedDict((g, 0) for g in groups)
    training_only = 0
    for name, p in backbone.named_parameters():
        if id(p) in inference:
            params[_group_of(name, groups)] += p.numel()
        else:
            training_only += p.numel()

    flops = OrderedDict((g, 0) for g in groups)
    head, extra = backbone.mc_head, []
    estimate, warp = head.estimate, head.warp

    def counted_estimate(cur, prev):
        extra.append(head_estimate_macs(head, cur) if cur is not None else 0)
        return estimate(cur, prev)

    def counted_warp(feat, motion):
        extra.append(head_warp_macs(head, feat))
        return warp(feat, motion)

    counter = FlopCounterMode(display=False)
    head.estimate, head.warp = counted_estimate, counted_warp
    try:
        with counter, torch.no_grad():
            backbone(torch.rand(1, 5, 3, *shape), None, with_aux=False)
    finally:
        del head.estimate, head.warp  # back to the class's methods
    root = type(backbone).__name__
    counts = counter.get_flop_counts()
    for name, module in backbone.named_modules():
        if name and not list(module.children()):  # leaves: no double counting
            flops[_group_of(name, groups)] += sum(counts.get(f'{root}.{name}', {}).values())
    if 'mc_head' in flops:
        flops['mc_head'] += 2 * sum(extra)

    rows = OrderedDict((g, (params[g], flops[g])) for g in groups
                       if params[g] or flops[g] or g in MC_GROUPS)
    mc = tuple(sum(rows[g][i] for g in MC_GROUPS if g in rows) for i in (0, 1))
    total = tuple(sum(r[i] for r in rows.values()) for i in (0, 1))
    return dict(rows=rows, training_only=training_only, mc=mc, total=total,
                head=type(head).__name__)


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
    if shape[0] % 4 or shape[1] % 4 or min(shape) <= 0:
        parser.error(f'--shape must be positive multiples of 4, got {shape}')
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
