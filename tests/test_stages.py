"""The per-stage breakdown of a CPU frame: the multiply-adds each direct layer executes, and the
stages of a profiled frame against their floors."""
import math

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import mtu_toolkit.models  # noqa: F401  (registers the models)
from mtu_toolkit.analysis.benchmark import PanningClip
from mtu_toolkit.analysis.stages import (PHASES, TARGETS, _by_layer, conv_stage,
                                         executed_macs, format_stages, frame_stages,
                                         layer_bytes, stage_targets, targets_markdown)
from mtu_toolkit.deploy import DirectConv2d, direct_conv_isa, optimize_for_inference
from mtu_toolkit.registry import MODELS

pytestmark = [pytest.mark.usefixtures('one_thread'),
              pytest.mark.skipif(not direct_conv_isa(),
                                 reason='the direct kernels do not run on this CPU')]


def torch_macs(conv, x):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        conv(x)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize('conv, stage', [
    (nn.Conv2d(6, 5, 3, 1, 1), 'convs: direct stride 1'),
    (nn.Conv2d(6, 5, 5, 4, 2), 'convs: strided'),
    (nn.ConvTranspose2d(6, 5, 4, 2, 1), 'convs: transposed')])
def test_direct_layers_count_the_multiply_adds_of_the_convolution(conv, stage):
    layer = DirectConv2d(conv, relu=False, winograd=False)
    x = torch.rand(1, 6, 12, 20)
    with torch.inference_mode():
        out = layer([x])
    assert conv_stage(layer.profile_name) == stage
    assert executed_macs(layer, out) == torch_macs(conv, x)


@pytest.mark.parametrize('k, points', [(3, 36), (5, 64)])
def test_winograd_layers_count_the_products_they_do(k, points):
    conv = nn.Conv2d(16, 16, k, 1, k // 2)
    x = torch.rand(1, 16, 12, 20)
    direct, wino = DirectConv2d(conv, False, winograd=False), DirectConv2d(conv, False, winograd=4)
    with torch.inference_mode():
        out = wino([x])
    assert wino.winograd == 4 and conv_stage(wino.profile_name) == f'convs: Winograd {k}x{k}'
    # 3 x 5 tiles of 4x4 outputs, (4 + k - 1)^2 products per tile and channel pair
    assert executed_macs(wino, out) == 15 * 16 * 16 * points
    assert executed_macs(direct, out) / executed_macs(wino, out) == pytest.approx(
        16 * k * k / points)


def test_transposed_layers_by_winograd_count_the_products_they_do():
    """The 4x4 stride-2 transposed conv by Winograd: a 3x3 conv of 4 Cout channels by
    F(4x4, 3x3) on its input, 36 products per 4x4 input tile, 4 Cout x Cin channel pairs."""
    conv = nn.ConvTranspose2d(16, 8, 4, 2, 1)
    x = torch.rand(1, 16, 12, 18)
    direct, wino = DirectConv2d(conv, False, winograd=False), DirectConv2d(conv, False, winograd=4)
    with torch.inference_mode():
        out = wino([x])
    assert out.shape == (1, 8, 24, 36) and conv_stage(wino.profile_name) == 'convs: transposed'
    # 3 x 5 input tiles (18 columns: 4 whole tiles and a half)
    assert executed_macs(wino, out) == 15 * 16 * 4 * 8 * 36
    assert executed_macs(direct, out) == 16 * 8 * 4 * 24 * 36


def test_frame_stages_of_a_direct_model():
    torch.manual_seed(0)
    restorer = MODELS.build(dict(type='MTURestorer', backbone=dict(
        type='MTUNet', num_units=2, channels=8, num_blocks=1))).eval()
    fast = optimize_for_inference(restorer, mode='direct')
    res = frame_stages(fast, PanningClip(32, 48, 'cpu'), rate=1e9)
    rows = {stage: (ms, floor) for stage, ms, floor in res['rows']}
    assert {'convs: transposed', 'convs: strided', 'convs: Winograd 3x3', 'MC: warp',
            'MC: correlation_argmax'} <= set(rows)
    # the cost volume: (2D+1)^2 dot products of 2ch = 16 channels at 8x12, at 1 GFLOP/s
    d = restorer.backbone.mc_head.max_displacement
    assert rows['MC: correlation_argmax'][1] == pytest.approx(
        1e3 * 2 * (2 * d + 1) ** 2 * 16 * 8 * 12 / 1e9)
    assert all(ms >= 0 for ms, _ in rows.values())
    assert sum(ms for ms, _ in rows.values()) == pytest.approx(res['frame_ms'], rel=1e-6) \
        or sum(ms for ms, _ in rows.values()) >= res['frame_ms']
    floors = [f for _, f in rows.values() if f is not None]
    assert res['floor_ms'] == pytest.approx(sum(floors))
    assert res['ratio'] == pytest.approx(res['frame_ms'] / res['floor_ms'])
    assert not math.isnan(res['ratio'])
    # the memory and roofline floors of the convolution stages
    convs = [stage for stage in rows if stage.startswith('convs')]
    assert set(res['memory']) == set(res['roofline']) == set(convs)
    for stage in convs:
        assert res['roofline'][stage] >= max(res['memory'][stage], rows[stage][1]) - 1e-9
        assert res['roofline'][stage] <= res['memory'][stage] + rows[stage][1] + 1e-9
    assert res['bandwidth_gbs'] > 0
    # the kernels' cycles by phase: every conv stage, shares summing to 1; only the Winograd
    # kernels transform their input (here dec1's transposed conv, 16 -> 8, and not dec2's)
    winograd = {}
    for m in fast.modules():
        if isinstance(m, DirectConv2d):
            winograd.setdefault(conv_stage(m.profile_name), []).append(bool(m.winograd))
    assert any(winograd['convs: transposed']) and not all(winograd['convs: transposed'])
    assert set(res['phases']) == set(convs)
    for stage, shares in res['phases'].items():
        assert len(shares) == len(PHASES) and sum(shares) == pytest.approx(1)
        assert all(x >= 0 for x in shares) and shares[PHASES.index('products')] > 0
        assert (shares[PHASES.index('input transform')] > 0) == any(winograd[stage])
    # layer by layer: every direct layer once, by its module path, the profiled frame's kernel
    # times and the floors adding up to their stages', the furthest above its roofline first
    layers = res['layers']
    direct = {name[len('backbone.'):].removesuffix('.kernel')
              for name, m in fast.named_modules() if isinstance(m, DirectConv2d)}
    assert {name for name, *_ in layers} == direct and len(layers) == len(direct)
    assert 'units.1.blocks.0.body.1' in direct and 'out_conv' in direct
    for stage in convs:
        mine = [row for row in layers if row[1] == stage]
        assert sum(ms for *_, ms, _, _ in mine) == pytest.approx(rows[stage][0], rel=1e-6)
        assert sum(floor for *_, floor, _ in mine) == pytest.approx(rows[stage][1], rel=1e-6)
        assert sum(roof for *_, roof in mine) == pytest.approx(res['roofline'][stage], rel=1e-6)
    assert all(calls >= 1 for _, _, calls, *_ in layers)
    excess = [ms - roof for *_, ms, _, roof in layers]
    assert excess == sorted(excess, reverse=True)
    text = '\n'.join(format_stages(res))
    assert 'glue' in text and 'frame (wall)' in text and 'x roofline' in text
    assert 'share of their cycles' in text and 'input transform' in text
    assert 'layers furthest above their roofline' in text
    assert f'{layers[0][0]} ({layers[0][1].split(": ")[1]})' in text


def test_frame_stages_take_each_stage_as_its_median_over_the_profiled_runs(monkeypatch):
    """``frames`` runs of the same window from the same state: each stage's time, the frame's
    and every layer's are medians over the runs; with the GEMM rate measured before each run,
    the floors are at the median rate."""
    from mtu_toolkit.analysis import benchmark, stages
    torch.manual_seed(0)
    restorer = MODELS.build(dict(type='MTURestorer', backbone=dict(
        type='MTUNet', num_units=2, channels=8, num_blocks=1))).eval()
    fast = optimize_for_inference(restorer, mode='direct')
    runs, real = [], stages._profile_run

    def spy(*args):
        runs.append(real(*args))
        return runs[-1]

    rates = iter([1e9, 1e9, 1e9, 4e9, 4e9, 4e9, 2e9, 2e9, 2e9])  # 3 GEMMs a run: 1, 4, 2
    monkeypatch.setattr(stages, '_profile_run', spy)
    by_layer, real_by_layer = [], stages._by_layer

    def layer_spy(layers, events, *args):
        by_layer.append(events)
        return real_by_layer(layers, events, *args)

    monkeypatch.setattr(stages, '_by_layer', layer_spy)
    monkeypatch.setattr(benchmark, 'gemm_rate', lambda device, reps: next(rates))
    res = frame_stages(fast, PanningClip(32, 48, 'cpu'), bandwidth=1e10, frames=3)
    assert len(runs) == 3 and res['frames'] == 3
    assert res['gemm_gflops'] == pytest.approx(2.0)  # the median rate
    for stage, ms, _ in res['rows']:
        assert ms == pytest.approx(1e3 * sorted(run[0][stage] for run in runs)[1])
    assert res['frame_ms'] == pytest.approx(1e3 * sorted(run[2] for run in runs)[1])
    assert [stage for stage, *_ in res['rows']].count('MC: correlation_argmax') == 1
    one = frame_stages(fast, PanningClip(32, 48, 'cpu'), rate=2e9, bandwidth=1e10)
    # (the warp's floor is a copy timed on each call)
    assert ({s: f for s, _, f in res['rows'] if s != 'MC: warp'} ==
            pytest.approx({s: f for s, _, f in one['rows'] if s != 'MC: warp'}))
    # the layers from the three runs' kernel events (_by_layer takes their medians)
    assert len(res['layers']) == len(one['layers']) > 0
    assert by_layer[0] == [run[1] for run in runs[:3]]  # (runs[3]: the one-run call)
    assert 'medians of 3 profiled runs' in '\n'.join(format_stages(res))
    with pytest.raises(ValueError, match='frames must be >= 1, got 0'):
        frame_stages(fast, PanningClip(32, 48, 'cpu'), rate=1e9, frames=0)


def test_frame_stages_profile_a_window_from_the_state_of_the_one_before(monkeypatch):
    """The frame counted and profiled is ``clip.window(index)`` from the state after
    ``clip.window(index - 1)``: a frame the matching finds the camera's motion in (the same
    window twice would be matched with itself), run once before it is counted."""
    restorer = MODELS.build(dict(type='MTURestorer', backbone=dict(
        type='MTUNet', num_units=1, channels=8, num_blocks=1))).eval()
    fast = optimize_for_inference(restorer, mode='direct')
    clip = PanningClip(16, 24, 'cpu')
    calls, real = [], fast.restore_frame

    def spy(window, state):
        out, new = real(window, state)
        calls.append((window.clone(), state, new))
        return out, new

    monkeypatch.setattr(fast, 'restore_frame', spy)
    frame_stages(fast, clip, index=3, rate=1e9, bandwidth=1e10)
    (first, none, state), *frames = calls
    assert torch.equal(first, clip.window(2)) and none is None
    # one run not counted (it touches the buffers a fresh model's frame from a state first
    # allocates, whose page faults the phase clock would count), the counting frame and the
    # profiled one
    assert len(frames) == 3
    assert all(torch.equal(w, clip.window(3)) and given is state for w, given, _ in frames)
    calls.clear()
    frame_stages(fast, clip, index=5, state=state, rate=1e9, bandwidth=1e10)
    assert len(calls) == 3 and all(given is state for _, given, _ in calls)


def test_layer_bytes_are_what_the_kernel_reads_and_writes():
    conv = nn.Conv2d(6, 5, 3, 1, 1)
    layer = DirectConv2d(conv, relu=False, winograd=False)
    a, b, res = torch.rand(1, 6, 12, 20), torch.rand(1, 6, 12, 20), torch.rand(1, 5, 12, 20)
    seen = []
    layer.register_forward_hook(lambda m, args, kwargs, out: seen.append(
        layer_bytes(args, kwargs, out)), with_kwargs=True)
    with torch.inference_mode():
        layer([a])                                     # one input, the output
        layer([a[:, :2], b[:, :4]], residual=res)      # two inputs concatenated, a residual
        layer([a, b], res, True)                       # summed before the kernel: one input
    px = 12 * 20 * 4
    assert seen == [(6 + 5) * px, (2 + 4 + 5 + 5) * px, (6 + 5 + 5) * px]


class Event:
    """A profiler event as _by_layer reads it: a name, a CPU time (ms), a start."""
    def __init__(self, name, start, ms=1.0):
        self.name, self.cpu_time_total = name, 1000.0 * ms
        self.time_range = type('Range', (), {'start': start})()


def test_layers_are_left_out_where_the_profiled_calls_do_not_pair_with_the_counted_ones():
    counted = [('convs: strided', 10, 100, 'enc2'), ('convs: transposed', 10, 100, 'dec2')]
    paired = [Event('mtu::conv_direct transposed 4x4/2', 2.0),
              Event('mtu::conv_direct 3x3/2', 1.0)]  # (out of order: paired by start time)
    rows = _by_layer(counted, [paired], rate=1e9, bandwidth=1e9)
    assert sorted(name for name, *_ in rows) == ['dec2', 'enc2']
    assert all(ms == 1.0 and calls == 1 for _, _, calls, ms, _, _ in rows)
    assert _by_layer(counted, [paired[:1]], rate=1e9, bandwidth=1e9) == []
    swapped = [Event(paired[0].name, 1.0), Event(paired[1].name, 2.0)]
    assert _by_layer(counted, [swapped], rate=1e9, bandwidth=1e9) == []
    # one run of several that does not pair leaves them all out
    assert _by_layer(counted, [paired, swapped], rate=1e9, bandwidth=1e9) == []


def test_a_layers_time_is_its_median_over_the_profiled_runs():
    """Several runs: a layer's time is the median of its runs' (each the sum of its calls), so
    that one run slowed by the host does not make the figure."""
    counted = [('convs: strided', 10, 100, 'enc2'), ('convs: strided', 10, 100, 'enc2'),
               ('convs: transposed', 10, 100, 'dec2')]
    name, up = 'mtu::conv_direct 3x3/2', 'mtu::conv_direct transposed 4x4/2'
    runs = [[Event(name, 0, 1.0), Event(name, 1, 2.0), Event(up, 2, 5.0)],
            [Event(name, 0, 1.0), Event(name, 1, 1.0), Event(up, 2, 50.0)],  # a slow dec2
            [Event(name, 0, 9.0), Event(name, 1, 9.0), Event(up, 2, 4.0)]]   # a slow enc2
    rows = {row[0]: row for row in _by_layer(counted, runs, rate=1e9, bandwidth=1e9)}
    assert rows['enc2'][2:4] == (2, 3.0)  # two calls a run: 3, 2 and 18 ms
    assert rows['dec2'][2:4] == (1, 5.0)


def _result(ratio, stages):
    """A frame_stages result with the given {stage: (ms, floor ms or None)}."""
    return dict(rows=[(stage, ms, floor) for stage, (ms, floor) in stages.items()],
                frame_ms=100.0, floor_ms=100.0 / ratio, ratio=ratio, gemm_gflops=100.0)


def test_stage_targets_hold_each_stage_to_its_limit():
    res = _result(2.5, {'convs: Winograd 5x5': (30.0, 20.0), 'convs: Winograd 3x3': (15.0, 10.0),
                        'MC: correlation_argmax': (10.0, 4.0), 'MC: warp': (2.0, 4.0),
                        'glue (Python, adds, copies, clamp)': (5.0, None)})
    checked = stage_targets(res)
    # the order of TARGETS, the stages without a floor left out; at the limit is met
    assert [row[0] for row in checked] == ['frame', 'MC: correlation_argmax', 'MC: warp',
                                           'convs: Winograd 3x3', 'convs: Winograd 5x5']
    verdicts = {stage: (ratio, limit, met) for stage, ratio, limit, met in checked}
    assert verdicts['frame'] == (2.5, 2.0, False)
    assert verdicts['MC: correlation_argmax'] == (2.5, 2.0, False)
    assert verdicts['MC: warp'] == (0.5, 2.0, True)
    assert verdicts['convs: Winograd 3x3'] == (1.5, 1.5, True)
    assert verdicts['convs: Winograd 5x5'] == (1.5, 1.5, True)
    assert all(TARGETS[stage] == limit for stage, _, limit, _ in checked)
    text = format_stages(res)
    line = {row.split('  ')[0]: row for row in text}
    assert '<=2x MISSED' in line['MC: correlation_argmax'] and '<=2x met' in line['MC: warp']
    assert '<=1.5x met' in line['convs: Winograd 3x3'] and '<=2x MISSED' in line['frame (wall)']
    assert '<=' not in line['glue (Python, adds, copies, clamp)']


def test_targets_markdown_has_a_row_a_variant_and_a_column_a_target():
    one = _result(1.2, {'convs: Winograd 3x3': (12.0, 10.0), 'MC: correlation_argmax': (5.0, 2.0)})
    two = _result(1.9, {'convs: Winograd 3x3': (19.0, 10.0), 'MC: warp': (1.0, 1.0)})
    table = targets_markdown([dict(variant='MTU1', stages=one), dict(variant='MTU2', stages=two),
                              dict(variant='MTU4')])  # (one without stages: left out)
    lines = table.splitlines()
    assert lines[0] == ('| variant | frame (<=2x) | correlation_argmax (<=2x) | warp (<=2x) | '
                        'Winograd 3x3 (<=1.5x) | all met |')
    assert lines[1] == '|---|---|---|---|---|---|'
    assert lines[2] == '| MTU1 | 1.20x met | 2.50x **missed** | - | 1.20x met | no |'
    assert lines[3] == '| MTU2 | 1.90x met | - | 1.00x met | 1.90x **missed** | no |'
    assert len(lines) == 4
    assert targets_markdown([dict(variant='MTU1')]) == ''
    # a variant timed twice (--variants MTU1 MTU1): a row each
    assert len(targets_markdown([dict(variant='MTU1', stages=one)] * 2).splitlines()) == 4
    good = _result(1.0, {'convs: strided': (1.0, 1.0)})
    assert targets_markdown([dict(variant='MTU1', stages=good)]).splitlines()[-1].endswith(
        '| yes |')
