"""Parameters and FLOPs of the inference network, per module (one counter for every tool).

FLOPs are 2 x multiply-accumulates: the convolutions and matrix products that
``torch.utils.flop_counter`` counts during a real forward (a transposed convolution counts
``2 * Cin * Cout * k * k`` per input pixel, a convolution per output pixel), plus what the MC
heads do outside them (cost volumes, per-pixel filtering), which each head states itself
(:meth:`~mtu_toolkit.models.mc_heads.BaseMCHead.estimate_macs` / ``warp_macs``).
Element-wise operations are left out.
"""
from collections import OrderedDict

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..models.mc_heads.base import count_mc_macs

#: the rows that make up the motion compensation (what the paper compares in Sec. 4.4)
MC_GROUPS = ('motion_layers', 'mc_head')


def count_flops(module, *inputs):
    """Run ``module(*inputs)`` under a FLOP counter.

    Returns:
        tuple: ``(counts, mc_macs)``: ``counts`` maps a module's qualified name (prefixed by
        the root's class name, as ``torch.utils.flop_counter`` names them) to
        ``{op: flops}``; ``mc_macs`` lists the MC heads' extra multiply-accumulates per call.
    """
    counter = FlopCounterMode(display=False)
    with count_mc_macs() as mc_macs, counter, torch.no_grad():
        module(*inputs)
    return counter.get_flop_counts(), mc_macs


def conv_flops(counts, root):
    """Total FLOPs of the convolutions in ``counts`` (from :func:`count_flops`) under
    ``root`` (the root's entry sums its whole tree)."""
    ops = counts.get(root, {})
    return sum(v for op, v in ops.items() if 'convolution' in str(op))


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


def check_frame_size(height, width):
    """Refuse a frame size the tools that measure the network cannot use as it is.

    Raises:
        ValueError: ``height`` or ``width`` is not a positive multiple of 4 (the network
            halves the frame twice; another size would be padded, so the count or the timing
            would be of a larger frame than asked for).
    """
    if min(height, width) <= 0 or height % 4 or width % 4:
        raise ValueError(f'height {height} and width {width} must be positive multiples of 4')


def complexity(model, shape):
    """Per-module ``(params, flops)`` of ``model``'s inference network for one frame (a frame
    with a previous one, as every frame of a video but the first).

    Args:
        model (nn.Module): a restorer (with ``backbone``) or a frame model like ``MTUNet``.
        shape (tuple[int]): (H, W), multiples of 4.

    Returns:
        dict: ``rows`` OrderedDict name -> (params, flops); ``training_only`` params of layers
        not in the inference network; ``mc`` (params, flops) of the MC part; ``total``;
        ``head`` the MC head's class name.
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

    window = torch.rand(1, 5, 3, *shape)
    with torch.no_grad():  # a frame with a previous frame: what each frame of a video costs
        _, state = backbone(window, None, with_aux=False)
    counts, mc_macs = count_flops(backbone, window, state, False)
    root = type(backbone).__name__
    flops = OrderedDict((g, 0) for g in groups)
    for name, module in backbone.named_modules():
        if name and not list(module.children()):  # leaves: no double counting
            flops[_group_of(name, groups)] += sum(counts.get(f'{root}.{name}', {}).values())
    if 'mc_head' in flops:
        flops['mc_head'] += 2 * sum(mc_macs)

    rows = OrderedDict((g, (params[g], flops[g])) for g in groups
                       if params[g] or flops[g] or g in MC_GROUPS)
    mc = tuple(sum(rows[g][i] for g in MC_GROUPS if g in rows) for i in (0, 1))
    total = tuple(sum(r[i] for r in rows.values()) for i in (0, 1))
    return dict(rows=rows, training_only=training_only, mc=mc, total=total,
                head=type(backbone.mc_head).__name__)


def frame_conv_flops(restorer, window, state):
    """Convolution FLOPs of one inference frame of ``restorer`` (the benchmark's floor), its
    window (1, 5, 3, H, W) padded to multiples of 4 and the state of the previous frame."""
    from ..models.restorers.padding import pad_to_multiple
    backbone = restorer.backbone
    with restorer._autocast(window.device):
        counts, _ = count_flops(backbone, pad_to_multiple(window), state, False)
    return conv_flops(counts, type(backbone).__name__)
