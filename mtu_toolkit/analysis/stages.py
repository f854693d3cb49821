"""Where one CPU frame's time goes, stage by stage, against the floor of what each executes.

Stages: the convolutions by kind (Winograd 3x3 / 5x5, direct stride 1, strided, transposed; the
direct kernels' profiler ranges, ``DirectConv2d.profile_name``), the motion compensation
(the fused ``correlation_argmax``, the warp, and the rest of the MC range: normalisation, sums),
and the glue (everything else: the Python between the layers, the adds of ``sum_inputs``,
copies, clamping).

Floors:

- a convolution executes ``Cin * Cout * K^2`` multiply-adds per output pixel (direct),
  ``Cin * Cout * 4`` per output pixel (the 4x4 stride-2 transposed convolution: 2x2 taps of
  each of its 4 output phases), or ``Cin * Cout * (M + K - 1)^2`` per M x M output tile
  (Winograd F(M x M, K x K): the products it really does; its transforms are its excess over
  the floor; the transposed convolution by Winograd: ``Cin * 4 Cout * 36`` per 4 x 4 tile of
  its input, a 3x3 conv of 4 Cout channels by F(4x4, 3x3)); its floor is ``2 *
  multiply-adds`` over the GEMM rate measured in the same run;
- ``correlation_argmax``: ``2 (2D+1)^2 C h w`` FLOPs (the MC head's ``estimate_macs``) at the
  same rate;
- the warp: copying its output's bytes into an existing buffer, timed in the same run;
- the rest of the MC range and the glue: none (their time is all excess).

Next to the convolutions' floors, their memory floor: the bytes a layer must move at least
(its inputs read once, its output written once) at the copy bandwidth measured in the same run
(a 64 MiB copy into an existing buffer: bytes read + written per second), and the roofline
floor, the larger of the two layer by layer: a layer at full resolution with few channels
(``base_conv``, ``out_conv``) moves ~100 MB for a few ms of products, so no kernel reaches
its multiply-add floor; the roofline column shows which stages are bound by memory.

And inside the convolutions, where their kernels' cycles go (the engine's phase clock, on for
one counting frame): packing the input rows, the Winograd input transform, the products, and
the epilogue (bias, ReLU, residual, the store; the Winograd output transform).

Last, layer by layer: the direct layers furthest above their roofline floor (time minus that
floor), so that a stage's excess can be traced to the layers that make it (a 3-channel output
layer at full resolution, say, in a stage of 52-channel ones).

The CPU targets (:data:`TARGETS`): the frame within 2x of its executed-multiply-add floor,
``correlation_argmax`` within 2x of its FLOP floor, the warp within 2x of a copy into an
existing buffer, each convolution kind within 1.5x of the floor of what it executes.
:func:`stage_targets` holds a result to them; the table gives each stage's verdict.
"""
import math
import statistics
import time
from collections import OrderedDict

import torch

from ..ops.functions import ARGMAX_RANGE, WARP_RANGE


def conv_stage(profile_name):
    """The stage of a direct layer from its profiler name ('mtu::conv_direct winograd 3x3/1')."""
    kind = profile_name.split('mtu::conv_direct ', 1)[-1]
    if kind.startswith('transposed'):
        return 'convs: transposed'
    if kind.startswith('winograd'):
        return f'convs: Winograd {kind.split()[1].split("/")[0]}'
    return 'convs: strided' if not kind.endswith('/1') else 'convs: direct stride 1'


def executed_macs(layer, output):
    """Multiply-adds a direct layer (``DirectConv2d``) executes for ``output`` (N, Cout, OH, OW)
    (see the module doc)."""
    n, cout, oh, ow = output.shape
    w = layer.weight
    k = w.shape[-1]
    if layer.transposed and layer.winograd:  # F(4x4, 3x3) on the input's oh/2 x ow/2
        m = layer.winograd
        return n * math.ceil(oh / 2 / m) * math.ceil(ow / 2 / m) * w.shape[0] * 4 * cout * 36
    if layer.transposed:
        return n * w.shape[0] * cout * 4 * oh * ow
    cin = w.shape[1]
    if layer.winograd:
        m = layer.winograd
        points = (m + k - 1) ** 2
        return n * math.ceil(oh / m) * math.ceil(ow / m) * cin * cout * points
    return n * cin * cout * k * k * oh * ow


def layer_bytes(args, kwargs, output):
    """Bytes a direct layer's kernel must move at least for one call: the inputs it reads (one
    summed input when ``sum_inputs``: the sum is made before the kernel), the residual, and the
    output."""
    inputs = kwargs.get('inputs', args[0] if args else ())
    residual = kwargs.get('residual', args[1] if len(args) > 1 else None)
    summed = kwargs.get('sum_inputs', args[2] if len(args) > 2 else False)
    read = list(inputs[:1]) if summed and len(inputs) > 1 else list(inputs)
    read += [] if residual is None else [residual]
    return sum(t.numel() * t.element_size() for t in read + [output])


#: the conv kernels' phases (``conv_phase_cycles`` of the engine, in this order)
PHASES = ('pack', 'input transform', 'products', 'epilogue')
#: the layers :func:`format_stages` lists (those furthest above their roofline floor)
LAYER_ROWS = 8

# The most each stage may take, in multiples of its floor (see the module doc); 'frame' is the
# profiled frame's wall time over the sum of the floors
TARGETS = OrderedDict([('frame', 2.0), ('MC: correlation_argmax', 2.0), ('MC: warp', 2.0),
                       ('convs: Winograd 3x3', 1.5), ('convs: Winograd 5x5', 1.5),
                       ('convs: transposed', 1.5), ('convs: strided', 1.5),
                       ('convs: direct stride 1', 1.5)])


def _layer_name(name):
    """A direct layer's name in the tables: its module path, less the restorer's ``backbone.``
    and the ``.kernel`` of the layer wrapping it ('units.1.blocks.0.body.1')."""
    return name.removeprefix('backbone.').removesuffix('.kernel')


def _count(model, window, state):
    """The direct layers' calls in order [(stage, executed multiply-adds, bytes moved, layer
    name)], the MC heads' estimate MACs, the warped tensors' shapes, and {stage: kernel cycles
    by phase} (empty when the engine has no phase clock), from one frame of ``model``."""
    from ..deploy import direct_conv
    from ..deploy.direct_conv import DirectConv2d
    from ..models.mc_heads.base import count_mc_macs
    layers, handles, warps, phases = [], [], [], {}
    engine = direct_conv.conv_ext
    clock = engine is not None and hasattr(engine, 'conv_phase_timing')

    def hook(module, args, kwargs, output):
        if module.uses_kernel(output):
            stage = conv_stage(module.profile_name)
            layers.append((stage, executed_macs(module, output),
                           layer_bytes(args, kwargs, output), names[module]))
            if clock:  # (only the kernels advance the clock: this call's cycles)
                cycles = engine.conv_phase_cycles(True)
                before = phases.get(stage, [0] * len(PHASES))
                phases[stage] = [a + b for a, b in zip(before, cycles)]

    if clock:
        # one run not counted first: a fresh model's first frame from a state allocates the
        # buffers that state needs, and the clock counted the first touches of their pages
        # (~0.7 G cycles for a 720p MTU2 frame's transposed layers) as the kernels' epilogues
        with torch.inference_mode():
            model.restore_frame(window, state)
    names = {m: _layer_name(n) for n, m in model.named_modules() if isinstance(m, DirectConv2d)}
    for m in names:
        handles.append(m.register_forward_hook(hook, with_kwargs=True))
    head = model.backbone.mc_head
    warp = head.warp

    def counted_warp(feat, motion):
        warps.append(tuple(feat.shape))
        return warp(feat, motion)

    head.warp = counted_warp
    try:
        if clock:
            engine.conv_phase_timing(True)
            engine.conv_phase_cycles(True)
        with count_mc_macs() as mc_macs, torch.inference_mode():
            model.restore_frame(window, state)
    finally:
        if clock:
            engine.conv_phase_timing(False)
        del head.warp
        for h in handles:
            h.remove()
    # the warp's entries in count_mc_macs are 0: the rest are the estimates (the cost volumes)
    return layers, sum(mc_macs), warps, phases


def copy_seconds(shape):
    """Median of 3 copies of a random (float32) tensor of ``shape`` into an existing buffer."""
    src, dst = torch.randn(shape), torch.empty(shape)
    dst.copy_(src)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _ancestors(event):
    parent = event.cpu_parent
    while parent is not None:
        yield parent
        parent = parent.cpu_parent


def frame_stages(model, clip, index=1, state=None, rate=None, bandwidth=None, frames=1):
    """Profile ``frames`` runs of one frame of ``model`` (a restorer on the direct kernels, CPU)
    and compare each stage with its floor.

    Args:
        model (MTURestorer): the model timed (e.g. ``optimize_for_inference(restorer)``).
        clip (PanningClip): the frames (:class:`~mtu_toolkit.analysis.benchmark.PanningClip`).
        index (int): the frame profiled is ``clip.window(index)`` (1, 5, 3, H, W).
        state (MTUState | None): the state after ``clip.window(index - 1)`` (None: that window
            is run first), so that the matching finds the clip's motion.
        rate (float | None): GEMM FLOP/s; when None, measured (median of 3) right before each
            profiled run, and the floors are taken at the median of those rates.
        bandwidth (float | None): copy bandwidth in bytes (read + written) per second; measured
            here (a 64 MiB copy, median of 3) when None.
        frames (int): profiled runs of the frame (the same window from the same state: the same
            calls). With more than one, each stage's and layer's time, the glue's and the
            frame's are the medians over the runs, so that one run slowed by the host (a
            shared VM's speed moves between seconds) does not make a stage's figure.

    Returns:
        dict: ``rows`` [(stage, ms, floor ms or None)], ``frame_ms`` (the profiled frame's wall
        time), ``floor_ms`` (the sum of the floors), ``ratio``, ``gemm_gflops``, ``frames``;
        for the convolution stages ``memory`` and ``roofline`` {stage: ms} (see the module
        doc), ``bandwidth_gbs``, ``phases`` {stage: shares of its kernel cycles by phase, in the
        order of :data:`PHASES`} (empty without the engine's phase clock), and ``layers``
        [(layer, stage, calls, ms, floor ms, roofline ms)], every direct layer, the furthest
        above its roofline floor first (empty where the profiled calls do not match the
        counted ones). With one run, the rows add up to the frame's time and a stage's layers
        to the stage's; with several, medians need not add up.
    """
    from .benchmark import gemm_rate
    if frames < 1:
        raise ValueError(f'frames must be >= 1, got {frames}')
    with torch.inference_mode():
        if state is None:
            _, state = model.restore_frame(clip.window(index - 1), None)
    # the counting frame and the profiled ones: the same window from the same state
    window = clip.window(index)
    layers, mc_macs, warps, phases = _count(model, window, state)
    if bandwidth is None:
        bandwidth = 2 * 2**26 / copy_seconds((2**24,))
    # the warp's floor: its output's bytes copied into an existing buffer
    copy_s = sum(copy_seconds(shape) for shape in warps)
    rates, runs = [], []
    for _ in range(frames):
        rates.append(rate if rate is not None else
                     statistics.median(gemm_rate(window.device, reps=3) for _ in range(3)))
        runs.append(_profile_run(model, window, state))
    rate = statistics.median(rates)
    spent = OrderedDict((stage, statistics.median(run[0].get(stage, 0.0) for run in runs))
                        for stage in runs[0][0])
    frame_s = statistics.median(run[2] for run in runs)
    floors, memory, roofline = {}, {}, {}
    for stage, m, nbytes, _ in layers:
        compute_ms, memory_ms = _floors_ms(m, nbytes, rate, bandwidth)
        floors[stage] = floors.get(stage, 0.0) + compute_ms / 1e3
        memory[stage] = memory.get(stage, 0.0) + memory_ms
        roofline[stage] = roofline.get(stage, 0.0) + max(compute_ms, memory_ms)
    floors['MC: correlation_argmax'] = 2 * mc_macs / rate
    floors['MC: warp'] = copy_s
    order = sorted((s for s in spent if s.startswith('convs')), key=lambda s: -spent[s])
    order += [s for s in spent if not s.startswith('convs')]
    rows = [(s, 1e3 * spent[s], 1e3 * floors[s] if s in floors else None) for s in order]
    floor_ms = sum(f for _, _, f in rows if f is not None)
    return dict(rows=rows, frame_ms=1e3 * frame_s, floor_ms=floor_ms,
                ratio=1e3 * frame_s / floor_ms if floor_ms else math.nan,
                gemm_gflops=rate / 1e9, frames=frames, memory=memory, roofline=roofline,
                bandwidth_gbs=bandwidth / 1e9,
                phases={stage: [c / sum(cycles) for c in cycles]
                        for stage, cycles in phases.items() if sum(cycles) > 0},
                layers=_by_layer(layers, [run[1] for run in runs], rate, bandwidth))


def _profile_run(model, window, state):
    """One profiled run of the frame: ({stage: seconds} including the MC rest and the glue,
    the direct kernels' profiler events, the frame's wall seconds)."""
    from torch.profiler import profile

    from ..models.backbones.mtu_net import MC_RANGE
    with torch.inference_mode(), profile() as prof:
        start = time.perf_counter()
        model.restore_frame(window, state)
        frame_s = time.perf_counter() - start
    spent = OrderedDict()
    mc_total = mc_inner = 0.0
    conv_events = []
    for ev in prof.events():
        name = ev.name
        sec = ev.cpu_time_total / 1e6
        if name.startswith('mtu::conv_direct'):
            conv_events.append(ev)
            stage = conv_stage(name)
            spent[stage] = spent.get(stage, 0.0) + sec
            if any(a.name == MC_RANGE for a in _ancestors(ev)):
                mc_inner += sec
        elif name in (ARGMAX_RANGE, WARP_RANGE):
            stage = 'MC: correlation_argmax' if name == ARGMAX_RANGE else 'MC: warp'
            spent[stage] = spent.get(stage, 0.0) + sec
            mc_inner += sec
        elif name == MC_RANGE:
            mc_total += sec
    spent['MC: rest (normalise, motion sums)'] = max(0.0, mc_total - mc_inner)
    spent['glue (Python, adds, copies, clamp)'] = max(0.0, frame_s - sum(spent.values()))
    return spent, conv_events, frame_s


def _floors_ms(macs, nbytes, rate, bandwidth):
    """A layer call's multiply-add and memory floors in ms (see the module doc)."""
    return 2e3 * macs / rate, 1e3 * nbytes / bandwidth


def _by_layer(layers, runs, rate, bandwidth):
    """The rows of ``layers`` in :func:`frame_stages`: the counting frame's calls ``layers``
    paired in order with each profiled run's kernel ranges (``runs``: a list of event lists;
    the same window from the same state: the same calls), summed by layer, each layer's time
    the median over the runs; [] where they do not pair."""
    times = OrderedDict()
    for events in runs:
        events = sorted(events, key=lambda ev: ev.time_range.start)
        if len(events) != len(layers) or any(
                conv_stage(ev.name) != stage for ev, (stage, *_) in zip(events, layers)):
            return []
        mine = OrderedDict()
        for (_, _, _, name), ev in zip(layers, events):
            mine[name] = mine.get(name, 0.0) + ev.cpu_time_total / 1e3
        for name, ms in mine.items():
            times.setdefault(name, []).append(ms)
    rows = OrderedDict()
    for stage, macs, nbytes, name in layers:
        compute_ms, memory_ms = _floors_ms(macs, nbytes, rate, bandwidth)
        row = rows.setdefault(name, [stage, 0, statistics.median(times[name]), 0.0, 0.0])
        row[1] += 1
        row[3] += compute_ms
        row[4] += max(compute_ms, memory_ms)
    return sorted(((name, *row) for name, row in rows.items()), key=lambda r: r[5] - r[3])


def stage_targets(result):
    """A :func:`frame_stages` result against :data:`TARGETS`: [(stage, x floor, target, met)]
    for the frame and every stage present with a floor, in the order of :data:`TARGETS`."""
    ratios = {stage: ms / floor for stage, ms, floor in result['rows'] if floor}
    ratios['frame'] = result['ratio']
    return [(stage, ratios[stage], limit, ratios[stage] <= limit)
            for stage, limit in TARGETS.items()
            if stage in ratios and not math.isnan(ratios[stage])]


def targets_markdown(rows):
    """The CPU targets of every variant profiled by ``tools/benchmark.py --stages`` as a
    markdown table: a row a variant (``rows``: its results, each with ``variant`` and
    ``stages``, a :func:`frame_stages` result), a column a target, each cell the stage's
    multiple of its floor and its verdict; '' when no row has stages."""
    rows = [r for r in rows if r.get('stages')]
    if not rows:
        return ''
    checked = [(r['variant'], {s: (x, met) for s, x, _, met in stage_targets(r['stages'])})
               for r in rows]
    columns = [s for s in TARGETS if any(s in c for _, c in checked)]
    head = [s.split(': ', 1)[-1] + f' (<={TARGETS[s]:g}x)' for s in columns]
    lines = ['| variant | ' + ' | '.join(head) + ' | all met |',
             '|---' * (len(columns) + 2) + '|']
    for variant, c in checked:
        cells = [f'{c[s][0]:.2f}x ' + ('met' if c[s][1] else '**missed**') if s in c else '-'
                 for s in columns]
        met = all(m for _, m in c.values())
        lines.append(f'| {variant} | ' + ' | '.join(cells) + f' | {"yes" if met else "no"} |')
    return '\n'.join(lines) + '\n'




def format_stages(result):
    """The table of :func:`frame_stages` as text lines."""
    memory, roofline = result.get('memory', {}), result.get('roofline', {})
    verdicts = {stage: f'<={limit:g}x ' + ('met' if met else 'MISSED')
                for stage, _, limit, met in stage_targets(result)}
    lines = [f'{"stage":<38}{"ms":>9}{"floor ms":>10}{"x floor":>9}{"target":>14}{"share":>8}'
             f'{"memory ms":>11}{"x roofline":>12}']
    total = result['frame_ms']
    for stage, ms, floor in result['rows']:
        ratio = f'{ms / floor:8.2f}x' if floor else f'{"-":>9}'
        floor_text = f'{floor:10.1f}' if floor is not None else f'{"-":>10}'
        line = (f'{stage:<38}{ms:9.1f}{floor_text}{ratio}{verdicts.get(stage, "-"):>14}'
                f'{100 * ms / total:7.1f}%')
        if stage in roofline:
            line += f'{memory[stage]:11.1f}{ms / roofline[stage]:11.2f}x'
        lines.append(line)
    runs = result.get('frames', 1)
    lines.append(f'{"frame (wall)":<38}{total:9.1f}{result["floor_ms"]:10.1f}'
                 f'{result["ratio"]:8.2f}x{verdicts.get("frame", "-"):>14}'
                 f'  (executed-multiply-add floor at '
                 f'{result["gemm_gflops"]:.0f} GFLOP/s'
                 + (f'; medians of {runs} profiled runs)' if runs > 1 else ')'))
    if 'bandwidth_gbs' in result:
        lines.append(f'memory floor: the bytes a layer moves at least, at '
                     f'{result["bandwidth_gbs"]:.1f} GB/s (a copy, read + written); roofline: '
                     'the larger floor, layer by layer')
    if result.get('phases'):
        lines.append(f'{"conv kernels, share of their cycles":<38}'
                     + ''.join(f'{name:>17}' for name in PHASES))
        for stage, _, _ in result['rows']:
            if stage in result['phases']:
                lines.append(f'{stage:<38}'
                             + ''.join(f'{100 * x:16.1f}%' for x in result['phases'][stage]))
        lines.append('(epilogue: bias, ReLU, residual and the store; for Winograd also its '
                     'output transform)')
    layers = result.get('layers') or []
    if layers:
        lines.append(f'{"layers furthest above their roofline":<38}{"ms":>9}{"floor ms":>10}'
                     f'{"x floor":>9}{"calls":>8}{"over ms":>11}{"x roofline":>12}')
        for name, stage, calls, ms, floor, roof in layers[:LAYER_ROWS]:
            kind = stage.split(': ', 1)[-1]
            lines.append(f'{f"{name} ({kind})":<38}{ms:9.1f}{floor:10.1f}{ms / floor:8.2f}x'
                         f'{calls:8d}{ms - roof:11.1f}{ms / roof:11.2f}x')
    return lines
