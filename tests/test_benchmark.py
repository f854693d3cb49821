"""The benchmark's measuring parts: conv-FLOP count against the network's layer list, the MC
timer, the timing protocol, and the tool's table/JSON/plot on a small size."""
import importlib.util
import json
import math
import os.path as osp

import pytest
import torch

from mtu_toolkit.analysis.benchmark import (PanningClip, benchmark_restorer, gemm_rate,
                                            gpu_seconds_in, mc_seconds, time_frames)
from mtu_toolkit.analysis.complexity import frame_conv_flops
from mtu_toolkit.deploy import default_mode
from mtu_toolkit.registry import MODELS

import prewarmed

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def script_module(folder, script):
    """``ROOT/folder/script`` (a tool or benchmark script) loaded as a module of its own."""
    spec = importlib.util.spec_from_file_location(osp.splitext(script)[0],
                                                  osp.join(ROOT, folder, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures('one_thread')


def build(num_units=2, channels=8, num_blocks=2):
    import mtu_toolkit.models  # noqa: F401
    return MODELS.build(dict(type='MTURestorer', backbone=dict(
        type='MTUNet', num_units=num_units, channels=channels, num_blocks=num_blocks))).eval()


def expected_flops(n, ch, rb, h, w):
    """Conv FLOPs of one inference frame, written from the network's layer list
    (docs/network.md)."""
    hw, q = h * w, (h // 4) * (w // 4)

    def c(cin, cout, k, pixels):
        return 2 * cin * cout * k * k * pixels
    inputs = c(3, ch, 3, hw) + c(15, ch, 3, hw)
    unit = (c(2 * ch, ch, 5, hw) + c(ch, ch, 3, hw // 4) + c(ch, 2 * ch, 3, q)
            + 2 * rb * c(2 * ch, 2 * ch, 3, q) + c(2 * ch, 2 * ch, 3, q)
            + c(2 * ch, ch, 4, q)            # dec1: transposed, per input pixel (1/4 res)
            + c(ch, ch, 4, hw // 4))         # dec2: per input pixel (1/2 res)
    motion = c(ch, 2 * ch, 5, q)             # one motion layer (feature-matching skipping)
    return inputs + n * unit + motion + c(ch, 3, 3, hw)


@pytest.mark.parametrize('n, ch, rb', [(1, 8, 2), (2, 6, 1)])
def test_conv_flops_match_layer_list(n, ch, rb):
    model = build(n, ch, rb)
    window = torch.rand(1, 5, 3, 24, 32)
    flops = frame_conv_flops(model, window, None)
    assert flops == expected_flops(n, ch, rb, 24, 32)


def test_paper_mtu2_flops_at_720p_scale():
    """MTU2's conv FLOPs scale with pixels: the 720p figure from a 1/16 frame."""
    flops = expected_flops(2, 26, 8, 720, 1280)
    assert 250e9 < flops < 262e9  # ~256 GFLOP per 1280x720 frame


def test_gemm_rate_is_plausible():
    rate = gemm_rate(torch.device('cpu'), size=256, reps=3)
    assert 1e8 < rate < 1e13


def test_mc_time_is_read_from_the_profiler_without_touching_the_model():
    model = build()
    clip = PanningClip(32, 32, 'cpu')
    before = {name: dict(vars(m)) for name, m in model.named_modules()}
    with torch.inference_mode():
        times, state = time_frames(model, clip, 0, 1, 2, torch.device('cpu'))
        mc, total = mc_seconds(model, clip, 3, 2, torch.device('cpu'), state)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert 0 < mc < total
    # nothing patched into the model's modules
    assert {name: set(vars(m)) for name, m in model.named_modules()} == \
        {name: set(v) for name, v in before.items()}


def test_cuda_mc_time_counts_the_extension_kernels_the_profiler_links_to_no_op():
    """A CUDA trace as torch.profiler gives it (events built by hand): two MC ranges on the
    CPU, the first with a conv kernel linked to it and an argmax call inside, the second with a
    warp call inside; an argmax call outside any MC range (not counted); the extension ranges'
    GPU-side copies (their kernels, linked to no op) in the same order."""
    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import FunctionEvent

    def event(name, start, end, device=DeviceType.CPU, parent=None):
        e = FunctionEvent(id=0, name=name, thread=0, start_us=start, end_us=end,
                          device_type=device, use_device='cuda')
        if parent is not None:
            e.set_cpu_parent(parent)
        return e
    mc, argmax, warp = 'mtu::motion_compensation', 'mtu::correlation_argmax', 'mtu::warp'
    first, second = event(mc, 0, 100), event(mc, 150, 200)
    first.append_kernel('conv_kernel', 0, 30)
    cpu = [first, second, event(argmax, 10, 20, parent=first),
           event(warp, 160, 170, parent=second), event(argmax, 300, 310)]
    gpu = [event(argmax, 1000, 1400, DeviceType.CUDA), event(warp, 1500, 1550, DeviceType.CUDA),
           event(argmax, 2000, 2400, DeviceType.CUDA), event(mc, 900, 930, DeviceType.CUDA)]
    assert gpu_seconds_in(cpu + gpu, mc) == pytest.approx((30 + 400 + 50) / 1e6)
    assert math.isnan(gpu_seconds_in(cpu + gpu[:1], mc))  # unpaired ranges: unknown, not 0


def test_the_clip_is_a_camera_panning_back_and_forth():
    """Frame p + 1 is frame p moved by (DY, DX) px (on their overlap), the pan turning back
    after PERIOD frames; windows are consecutive frames."""
    clip = PanningClip(32, 48, 'cpu')
    dy, dx, period = PanningClip.DY, PanningClip.DX, PanningClip.PERIOD
    assert (dx, dy, period) == (8, 4, 8) and tuple(clip.frames.shape) == (period + 1, 3, 32, 48)
    assert [clip.position(i) for i in range(2 * period + 2)] == \
        list(range(period + 1)) + list(range(period - 1, -1, -1)) + [1]
    for p in range(period):
        assert torch.equal(clip.frame(p + 1)[:, :-dy, :-dx], clip.frame(p)[:, dy:, dx:])
        assert not torch.equal(clip.frame(p + 1), clip.frame(p))
    assert torch.equal(clip.frame(period + 1), clip.frame(period - 1))  # turned back
    for k in (0, 5, period - 1, 2 * period + 3):
        window, after = clip.window(k), clip.window(k + 1)
        assert tuple(window.shape) == (1, 5, 3, 32, 48) and window.dtype == torch.float32
        assert 0 <= window.min() and window.max() <= 1
        for j in range(4):
            assert torch.equal(window[0, j + 1], after[0, j])
        assert torch.equal(window[0, 2], clip.frame(k + 2))


class Recorder:
    """A restorer that records the windows and states it is given (or passes them on to
    ``model`` with the displacement its MC head finds)."""

    def __init__(self, model=None):
        self.model, self.windows, self.states, self.motions, self.returned = \
            model, [], [], [], []

    def restore_frame(self, window, state):
        self.windows.append(window.clone())
        self.states.append(state)
        if self.model is None:
            return None, len(self.windows)
        out, state, (disp, _) = self.model.restore_frame(window, state, return_motion=True)
        self.motions.append(disp)
        self.returned.append(state)
        return out, state


def test_time_frames_feeds_consecutive_windows_and_carries_the_state():
    clip = PanningClip(16, 24, 'cpu')
    fake = Recorder()
    times, state = time_frames(fake, clip, 5, 2, 3, torch.device('cpu'), state='before')
    assert len(times) == 3 and state == 5
    assert fake.states == ['before', 1, 2, 3, 4]
    assert len(fake.windows) == 5
    for i, window in enumerate(fake.windows):
        assert torch.equal(window, clip.window(5 + i))


def test_the_benchmark_times_frames_with_motion():
    """benchmark_restorer runs one clip on: warm-up, timed and MC frames are consecutive
    windows, each from the state of the one before, and the matching finds the camera's
    motion. (Until the clip, every frame was the same window: the matching compared a frame
    with itself, every displacement 0, the warp a copy.)"""
    model = build()
    spy = Recorder(model)
    benchmark_restorer(model, spy, 64, 96, torch.device('cpu'), warmup=2, frames=3,
                       mc_frames=2)
    clip = PanningClip(64, 96, 'cpu')
    assert len(spy.windows) == 7
    for i, window in enumerate(spy.windows):
        assert torch.equal(window, clip.window(i))
    assert spy.states[0] is None
    assert all(given is made for given, made in zip(spy.states[1:], spy.returned))
    for i, disp in enumerate(spy.motions[1:], 1):
        assert (disp != 0).any(), f'frame {i}: no displacement found'
    # the old protocol, for contrast: the same window again from its own state
    with torch.inference_mode():
        _, state = model.restore_frame(clip.window(0), None)
        _, _, (disp, _) = model.restore_frame(clip.window(0), state, return_motion=True)
    assert not (disp != 0).any()


def test_benchmark_restorer_fields():
    model = build()
    res = benchmark_restorer(model, model, 32, 48, torch.device('cpu'), warmup=1, frames=3,
                             mc_frames=2)
    assert res['gflops'] == pytest.approx(expected_flops(2, 8, 2, 32, 48) / 1e9)
    assert len(res['frame_ratios']) == 3
    assert math.isclose(res['ratio'], sorted(res['frame_ratios'])[1])
    assert math.isclose(res['floor_ms'], 1e3 * res['gflops'] / res['gemm_gflops'])
    assert math.isclose(res['fps'], 1e3 / res['ms'])
    assert 0 < res['mc_share'] < 1 and res['frames'] == 3


def test_each_frame_is_held_to_the_gemm_rate_measured_before_it(monkeypatch):
    """A machine that slows down 2x halfway gives the same ratio for every frame."""
    import mtu_toolkit.analysis.benchmark as bench
    speed = iter([1e11, 1e11, 5e10, 5e10, 5e10])  # warm-up frames take no GEMM
    current = [None]

    def fake_rate(device, size=2048, reps=5, dtype=torch.float32):
        current[0] = next(speed)
        return current[0]

    def fake_frames(restorer, clip, start, warmup, frames, device, state=None):
        # 200 GFLOP at the current rate
        return [2e11 / current[0]] * frames if frames else [], state

    monkeypatch.setattr(bench, 'gemm_rate', fake_rate)
    monkeypatch.setattr(bench, 'time_frames', fake_frames)
    monkeypatch.setattr(bench, 'frame_conv_flops', lambda restorer, window, state: 1e11)
    model = build()
    res = bench.benchmark_restorer(model, model, 32, 48, torch.device('cpu'), warmup=1,
                                   frames=5, mc_frames=0)
    assert res['frame_ratios'] == pytest.approx([2.0] * 5)
    assert res['ratio'] == pytest.approx(2.0)
    assert res['ms'] == pytest.approx(4000) and res['gemm_gflops'] == pytest.approx(50)


def test_tool_writes_table_json_and_plot(tmp_path):
    tool = script_module('tools', 'benchmark.py')
    quality = tmp_path / 'q.json'
    quality.write_text(json.dumps({'MTU1': 29.5}))
    out = tmp_path / 'bench'
    assert tool.main(['--variants', 'MTU1', 'MTU2-hp', '--size', '64x36', '--warmup', '1',
                      '--frames', '2', '--device', 'cpu', '--quality', str(quality),
                      '--out-dir', str(out)]) == 0
    result = json.loads((out / 'benchmark.json').read_text())
    assert [r['variant'] for r in result['rows']] == ['MTU1']
    assert result['skipped'] and 'MTU2-hp' in result['skipped'][0]  # fp16 is CUDA-only
    row = result['rows'][0]
    assert row['params'] == pytest.approx(0.538, abs=5e-4) and row['paper_ms'] == 32
    table = (out / 'benchmark.md').read_text()
    assert '| MTU1 | float32 | 0.538 |' in table
    # the tools' CPU model: MTU1's wide stride-1 layers run Winograd (AVX-512, AVX2), and the
    # table says that the floor counts direct FLOPs
    winograd = default_mode() == 'direct'
    assert row['model'] == ('direct kernels + Winograd' if winograd else 'eager')
    assert ('fewer multiply-adds' in table) == winograd
    assert (out / 'quality_speed.png').stat().st_size > 1000


def test_tool_refuses_bad_arguments_before_timing(tmp_path, capsys):
    tool = script_module('tools', 'benchmark.py')
    (tmp_path / 'file').write_text('')
    (tmp_path / 'q.json').write_text('{"MTU1": "high"}')
    (tmp_path / 'bad.json').write_text('{bad')
    for extra, message in ((['--out-dir', str(tmp_path / 'file')], 'is a file, not a folder'),
                           (['--quality', str(tmp_path / 'q.json')], 'expected {"<variant>"'),
                           (['--quality', str(tmp_path / 'bad.json')], 'not JSON')):
        assert tool.main(['--variants', 'MTU1', '--size', '64x36', '--frames', '1',
                          '--device', 'cpu', *extra]) == 2
        err = capsys.readouterr()
        assert message in err.err and 'MTU1 ' not in err.out  # nothing was timed
    with pytest.raises(SystemExit):
        tool.parse_args(['--threads', '-1'])
    with pytest.raises(SystemExit):
        tool.parse_args(['--stages', '--stage-frames', '0'])
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        'error: --stage-frames must be >= 1, got 0')


def test_tool_stages_are_medians_of_the_profiled_runs(tmp_path, capsys):
    """``--stages --stage-frames N``: N profiled runs of a frame a variant, in the JSON and the
    printed table."""
    if default_mode() != 'direct':
        pytest.skip('the direct kernels do not run on this CPU')
    tool = script_module('tools', 'benchmark.py')
    out = tmp_path / 'bench'
    assert tool.main(['--variants', 'MTU1', '--size', '64x36', '--warmup', '0', '--frames', '1',
                      '--device', 'cpu', '--stages', '--stage-frames', '2',
                      '--out-dir', str(out)]) == 0
    stages = json.loads((out / 'benchmark.json').read_text())['rows'][0]['stages']
    assert stages['frames'] == 2 and stages['rows'] and stages['layers']
    printed = capsys.readouterr().out
    assert 'medians of 2 profiled runs' in printed
    # the targets: a verdict a stage in the printed table, a row a variant in benchmark.md
    assert '<=2x ' in printed and '<=1.5x ' in printed
    table = (out / 'benchmark.md').read_text()
    assert '| variant | frame (<=2x) | correlation_argmax (<=2x) |' in table
    assert table.splitlines()[-1].startswith('| MTU1 | ')


def test_tool_cpu_isa_runs_the_avx2_kernels_and_gives_the_best_back(tmp_path, capsys):
    """``--cpu-isa avx2``: the conv engine's and the MC ops' AVX2 kernels for the models timed
    (the device line says so), the best instruction set again after; where they cannot run,
    one line before anything is timed."""
    from mtu_toolkit.deploy import direct_conv_isa
    from mtu_toolkit.deploy.conv_engine import conv_ext
    from mtu_toolkit.ops.extension import ext as ops_ext
    if not direct_conv_isa() or ops_ext is None:
        pytest.skip('the compiled CPU kernels do not run on this CPU')
    tool = script_module('tools', 'benchmark.py')
    best = (conv_ext.conv_direct_isa(), ops_ext.cpu_isa())
    out = tmp_path / 'bench'
    seen = []
    real = tool.tool_model

    def spy(restorer, **kwargs):  # (the kernels the model is built for)
        seen.append((conv_ext.conv_direct_isa(), ops_ext.cpu_isa()))
        return real(restorer, **kwargs)

    tool.tool_model = spy
    assert tool.main(['--variants', 'MTU1', '--size', '64x36', '--warmup', '0', '--frames', '1',
                      '--device', 'cpu', '--cpu-isa', 'avx2', '--out-dir', str(out)]) == 0
    assert seen == [('avx2', 'avx2')]
    assert 'conv kernels avx2 (forced)' in (out / 'benchmark.md').read_text()
    assert (conv_ext.conv_direct_isa(), ops_ext.cpu_isa()) == best
    with pytest.raises(ValueError, match=r'^--cpu-isa avx2: the CPU kernels, but --device is '):
        with tool.cpu_isa('avx2', torch.device('cuda')):
            pass
    assert (conv_ext.conv_direct_isa(), ops_ext.cpu_isa()) == best
    assert tool.parse_args([]).cpu_isa == 'best'
    with pytest.raises(SystemExit):
        tool.parse_args(['--cpu-isa', 'sse'])
    capsys.readouterr()


def test_tool_device_not_here_is_an_argument_error(capsys, monkeypatch, tmp_path):
    tool = script_module('tools', 'benchmark.py')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for device, message in (('cuda', 'device cuda was asked for, but CUDA is not available '
                             'here; use --device cpu'), ('gpu', "bad device 'gpu'")):
        assert tool.main(['--variants', 'MTU1', '--size', '64x36', '--frames', '1',
                          '--device', device, '--out-dir', str(tmp_path / 'b')]) == 2
        err = capsys.readouterr()
        assert err.err.startswith(f'error: {message}') and err.err.count('\n') == 1
        assert 'MTU1 ' not in err.out and not (tmp_path / 'b').exists()


def test_tool_size_must_be_multiples_of_4_as_model_complexity(capsys):
    tool = script_module('tools', 'benchmark.py')
    assert tool.parse_args(['--size', '64x36']).size == (64, 36)
    for size in ('30x22', '64x34', '0x8'):
        with pytest.raises(SystemExit) as stop:
            tool.parse_args(['--size', size])
        assert stop.value.code == 2
        w, h = size.rsplit('x', 1)
        assert capsys.readouterr().err.splitlines()[-1].endswith(
            f': error: argument --size: {size}: height {h} and width {w} must be positive '
            'multiples of 4')


def test_engine_comparison_swaps_and_restores_the_engine(capsys, monkeypatch):
    """``benchmarks/inference_cpu.py --baseline-conv-ext``: the direct form of the same weights
    on another build of the engine (here this build's .so loaded a second time), frames taking
    turns; the frames agree, and the tools' engine is back afterwards."""
    from mtu_toolkit.deploy import direct_conv, direct_conv_isa
    if not direct_conv_isa():
        pytest.skip('the direct kernels do not run on this CPU')
    bench = script_module('benchmarks', 'inference_cpu.py')
    engine = direct_conv.conv_ext
    seen = []
    real = bench.engine

    def spying(module):
        seen.append(module)
        return real(module)

    monkeypatch.setattr(bench, 'engine', spying)
    bench.compare_engines(build(), bench.load_build(engine.__file__, '_conv_cpu'), 16, 24,
                          frames=2)
    out = capsys.readouterr().out
    assert 'old/new per frame' in out and 'max |new - old| 0.0e+00' in out
    assert seen and all(m is not engine and m.__file__ == engine.__file__ for m in seen)
    assert direct_conv.conv_ext is engine
    with pytest.raises(ImportError, match='missing.so: cannot load it as a build of'):
        bench.load_build('missing.so', '_conv_cpu')
    with pytest.raises(ImportError, match='cannot load it as a build of mtu_toolkit._conv_cpu'):
        bench.load_build(osp.join(ROOT, 'README.md'), '_conv_cpu')


def test_ops_comparison_swaps_and_restores_the_ops_build(capsys, monkeypatch):
    """``benchmarks/inference_cpu.py --baseline-ext``: the old side's motion-compensation ops on
    another build of ``_ext`` (here this build's .so loaded a second time), the engine this
    build's; the frames agree, the old side called the other build's ops, and the ops' build
    is back afterwards."""
    from mtu_toolkit.deploy import direct_conv_isa
    from mtu_toolkit.ops import functions
    if not direct_conv_isa():
        pytest.skip('the direct kernels do not run on this CPU')
    if functions.ext is None:
        pytest.skip('the compiled ops are not built')
    bench = script_module('benchmarks', 'inference_cpu.py')
    ops = functions.ext
    other = bench.load_build(ops.__file__, '_ext')
    calls = []
    real = other.correlation_argmax_matching

    class Spy:  # (the other build, counting its argmax calls)
        def __getattr__(self, name):
            return getattr(other, name)

        def correlation_argmax_matching(self, *args):
            calls.append(args)
            return real(*args)

    bench.compare_engines(build(), None, 16, 24, frames=2, baseline_ext=Spy())
    assert 'max |new - old| 0.0e+00' in capsys.readouterr().out
    assert calls and functions.ext is ops
    with pytest.raises(ImportError, match='cannot load it as a build of mtu_toolkit._ext'):
        bench.load_build(osp.join(ROOT, 'README.md'), '_ext')


def test_each_build_file_loads_as_its_own_module(tmp_path):
    """Two builds loaded in one process are two modules, each the file asked for (CPython
    keeps an extension by its module name: under one name the second was the first again,
    and an old-against-new comparison timed one build against itself)."""
    import shutil

    from mtu_toolkit.analysis.benchmark import load_build
    from mtu_toolkit.deploy import direct_conv
    if not direct_conv.conv_ext:
        pytest.skip('the conv engine is not built')
    paths = [str(tmp_path / f'{side}_conv_cpu.so') for side in ('old', 'new')]
    for path in paths:
        shutil.copy(direct_conv.conv_ext.__file__, path)
    old, new = (load_build(path, '_conv_cpu') for path in paths)
    assert old is not new and old.conv_direct is not new.conv_direct
    assert (old.__file__, new.__file__) == tuple(paths)
    assert load_build(paths[0], '_conv_cpu') is old


def test_engine_comparison_runs_the_avx2_kernels_when_asked(capsys):
    """``--conv-isa avx2``: both builds run their AVX2 kernels (packed for them), and the
    frames still agree; 'best' restores the CPU's own."""
    from mtu_toolkit.deploy import direct_conv, direct_conv_isa
    if direct_conv_isa() not in ('avx512', 'avx2'):  # (AVX-512 CPUs have AVX2 too)
        pytest.skip('the AVX2 kernels do not run on this CPU')
    bench = script_module('benchmarks', 'inference_cpu.py')
    baseline = bench.load_build(direct_conv.conv_ext.__file__, '_conv_cpu')
    best = direct_conv_isa()
    try:
        bench.use_conv_isa('avx2', baseline)
        assert direct_conv_isa() == 'avx2' and baseline.conv_direct_isa() == 'avx2'
        bench.compare_engines(build(), baseline, 16, 24, frames=2)
    finally:
        bench.use_conv_isa('best', baseline)
    assert 'max |new - old| 0.0e+00' in capsys.readouterr().out
    assert direct_conv_isa() == best


def test_conv_benchmark_times_both_broadcasts_of_every_engine_variant():
    """``benchmarks/conv_cpu.py --broadcasts``: each engine variant of a layer as two, with
    embedded and register broadcasts (checked equal), the CPU's choice restored after."""
    from mtu_toolkit.deploy import direct_conv_isa
    if direct_conv_isa() != 'avx512':
        pytest.skip('the broadcasts are a choice of the AVX-512 kernels')
    from mtu_toolkit.deploy.conv_engine import conv_ext
    bench = script_module('benchmarks', 'conv_cpu.py')
    auto = conv_ext.conv_direct_broadcasts()
    res = bench.run_layer(26, 26, 3, 1, 12, 40, 1, setting='broadcasts')
    assert list(res) == ['pytorch'] + [f'{v} {m}' for v in ('direct', 'F(2x2)', 'F(4x4)')
                                       for m in ('embedded', 'registers')]
    assert all(t > 0 and err < 1e-4 for t, err in res.values())
    strided = bench.run_layer(26, 52, 5, 4, 16, 40, 1)  # the motion layer: direct only
    assert list(strided) == ['pytorch', 'direct']
    # the transposed layer: its own kernel and F(4x4, 3x3) on its output phases
    transposed = bench.run_layer(26, 26, 4, 2, 6, 20, 1)
    assert list(transposed) == ['pytorch', 'direct', 'F(4x4)']
    assert all(err < 1e-4 for _, err in transposed.values())
    assert conv_ext.conv_direct_broadcasts() == auto


def test_conv_benchmark_times_both_prefetch_modes_of_every_engine_variant():
    """``benchmarks/conv_cpu.py --prefetch``: each engine variant of a layer fetching ahead
    into L2 and into L1 (checked equal), the default restored after."""
    from mtu_toolkit.deploy import direct_conv_isa
    if not direct_conv_isa():
        pytest.skip('the direct kernels do not run here')
    from mtu_toolkit.deploy.conv_engine import conv_ext
    bench = script_module('benchmarks', 'conv_cpu.py')
    conv_ext.conv_direct_use_prefetch('l2')  # a non-default mode before: 'auto' after
    res = bench.run_layer(52, 26, 4, 2, 6, 20, 1, setting='prefetch')
    assert list(res) == ['pytorch'] + [f'{v} {m}' for v in ('direct', 'F(4x4)')
                                       for m in ('l2', 'l1')]
    assert all(t > 0 and err < 1e-4 for t, err in res.values())
    assert conv_ext.conv_direct_prefetch() == 'l1'


def _ops_bench():
    """``benchmarks/ops.py`` as a module (the test skipped where the extension is missing)."""
    from mtu_toolkit.ops import extension
    if not extension.EXT_AVAILABLE:
        pytest.skip(extension.FALLBACK_REASON)
    bench = script_module('benchmarks', 'ops.py')
    return bench


def test_ops_argmax_floor_is_the_rate_of_the_gemm_timed_in_the_same_turns(monkeypatch, capsys):
    """``benchmarks/ops.py``: the argmax's FLOP floor is taken at the rate of the ``torch.mm``
    that took turns with the ops (a VM's speed swings move both alike), not of one timed
    before them."""
    bench = _ops_bench()
    turns = {}

    def fake_medians(calls, repeats):
        turns.update(calls)
        return {name: (0.5 if name == bench.GEMM else 0.01) for name in calls}

    monkeypatch.setattr(bench, 'alternating_medians', fake_medians)
    f1, f2, _, feat, disp = bench.inputs(12, 20, 3, torch.device('cpu'), channels=8)
    rows = {name: (sec, floor) for name, sec, floor, _ in
            bench.floors(f1, f2, feat, disp, 3, 5, repeats=1)}
    assert bench.GEMM in turns
    rate = 2 * bench.GEMM_SIZE**3 / 0.5
    assert rows['correlation_argmax'][1] == pytest.approx(2 * 7**2 * 8 * 12 * 20 / rate)
    assert f'at {rate / 1e9:.0f} GFLOP/s' in capsys.readouterr().out


def test_ops_floors_time_another_build_next_to_this_one(capsys):
    """``benchmarks/ops.py --baseline-ext``: the MC ops of another build (here this build's .so
    loaded a second time) take turns with this build's; both give the same displacements, and
    each op gets its old / new line."""
    bench = _ops_bench()
    f1, f2, _, feat, disp = bench.inputs(12, 20, 3, torch.device('cpu'))
    from mtu_toolkit.ops import extension
    baseline = bench.load_build(extension.ext.__file__, '_ext')
    # this build takes the argmax's workspace, so the old side is timed with its own kept one
    assert bench.takes_workspace(baseline)
    rows = bench.floors(f1, f2, feat, disp, 3, 5, repeats=1, baseline=baseline)
    out = capsys.readouterr().out
    assert 'agree at 100.0000% of the pixels' in out
    for new in ('correlation_argmax', 'warp, fresh output', 'warp into reused out'):
        assert f'vs  {new}' in out
    assert [name for name, *_ in rows][:3] == [
        'correlation_argmax', 'warp into reused out', 'warp, coherent motion']
    # a build from before the workspace argument is called without it (it would refuse it)
    from types import SimpleNamespace
    old = SimpleNamespace(
        correlation_argmax=lambda f1, f2, d, smooth: baseline.correlation_argmax(f1, f2, d,
                                                                                 smooth),
        warp_forward=baseline.warp_forward)
    assert not bench.takes_workspace(old)
    bench.floors(f1, f2, feat, disp, 3, 5, repeats=1, baseline=old)
    assert 'agree at 100.0000% of the pixels' in capsys.readouterr().out


@pytest.mark.parametrize('script, ends', [
    ('ops.py', 'each against its floor measured in the same run.'),
    ('peers_cpu.py', "on the toolkit's own ONNX export (mtu_toolkit.deploy.export_onnx).")])
def test_benchmark_help_description_is_whole(script, ends):
    """``--help`` gives the docstring's whole first sentence (it runs over two lines)."""
    import sys
    proc = prewarmed.run([sys.executable, osp.join(ROOT, 'benchmarks', script), '--help'],
                         capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    description = ' '.join(proc.stdout.split('\n\n')[1].split())
    assert description.endswith(ends), description


def bad_argument_cases(afile):
    """(script, arguments, what its one error line says) of benchmarks/*.py."""
    return [
        ('inference_cpu.py', ['--size', '66x50'],  # timed padded to 68x52 before
         'argument --size: 66x50: height 50 and width 66 must be positive multiples of 4'),
        ('inference_cpu.py', ['--frames', '0'], '--frames must be >= 1, got 0'),
        ('inference_cpu.py', ['--stage-frames', '0'], '--stage-frames must be >= 1, got 0'),
        ('inference_cpu.py', ['--baseline-ext', str(afile)],
         f'{afile}: cannot load it as a build of mtu_toolkit._ext'),
        ('conv_cpu.py', ['--repeats', '0'], '--repeats must be >= 1, got 0'),
        ('conv_cpu.py', ['--size', '1280'], "argument --size: size must be WIDTHxHEIGHT, got "
         "'1280'"),
        ('ops.py', ['--threads', '0', '--skip-references'], '--threads must be >= 1, got 0'),
        ('ops.py', ['--size', '0', '16'], '--size and --channels must be >= 1'),
        ('peers_cpu.py', ['--runtimes', 'onnxruntime', '--onnx-dir', str(afile)],
         f'--onnx-dir {afile}: is a file, not a folder'),
        ('peers_cpu.py', ['--warmup', '-1'], '--warmup must be >= 0, got -1'),
        ('tiling.py', ['--frames', '0'], '--frames must be >= 1, got 0'),
        ('tiling.py', ['--size', '64x30'], 'height 30 and width 64 must be positive multiples'),
    ]


def test_benchmark_scripts_refuse_bad_arguments_in_one_line(tmp_path):
    """benchmarks/*.py: a bad count, size, thread number or output folder ends the run in one
    argparse error line (exit 2) before any model is built, not in a traceback minutes later.
    Each script once as a command."""
    import os
    import sys
    afile = tmp_path / 'afile'
    afile.write_text('')
    for script, args, message in bad_argument_cases(afile)[::2]:
        proc = prewarmed.run([sys.executable, osp.join(ROOT, 'benchmarks', script), *args],
                             capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, OMP_NUM_THREADS='1'))
        out, err = proc.stdout, proc.stderr
        what = f'{script} {" ".join(args)}: rc {proc.returncode}\n{err}'
        assert proc.returncode == 2 and 'Traceback' not in err, what
        assert err.splitlines()[-1].startswith(f'{script}: error: '), what
        assert message in err.splitlines()[-1], what
        assert out == '', what  # nothing was run


@pytest.mark.parametrize('case', range(1, len(bad_argument_cases('afile')), 2))
def test_benchmark_scripts_refuse_more_bad_arguments(case, tmp_path, monkeypatch, capsys):
    """The other bad arguments of :func:`bad_argument_cases`, each script's ``main`` in this
    process."""
    import sys
    afile = tmp_path / 'afile'
    afile.write_text('')
    script, args, message = bad_argument_cases(afile)[case]
    bench = script_module('benchmarks', script)
    monkeypatch.setattr(sys, 'argv', [script, *args])
    with pytest.raises(SystemExit) as stop:
        bench.main()
    err = capsys.readouterr()
    assert stop.value.code == 2 and err.out == ''
    assert err.err.splitlines()[-1].startswith(f'{script}: error: ')
    assert message in err.err.splitlines()[-1] and 'Traceback' not in err.err


def test_alternating_medians_rotates_the_order_of_the_calls():
    """Each round starts one call further on, so that over as many rounds as calls every call
    is timed once in each place (none always right after the same one); every call's median
    is of its own times."""
    from mtu_toolkit.analysis.benchmark import alternating_medians
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in 'abc'}
    medians = alternating_medians(calls, 3)
    assert order[:3] == list('abc')  # the warm-up round
    rounds = [order[3:6], order[6:9], order[9:12]]
    assert rounds == [list('abc'), list('bca'), list('cab')]
    assert set(medians) == set('abc') and all(m >= 0 for m in medians.values())
    order.clear()
    alternating_medians(calls, 2, before=lambda: order.append('-'))
    assert order == list('abc') + list('-a-b-c') + list('-b-c-a')  # untimed, before each


def test_conv_benchmark_times_the_input_sum_both_ways():
    """``benchmarks/conv_cpu.py``'s last line: torch.add against the engine's sum_inputs (a
    median for each, after checking that they agree)."""
    from mtu_toolkit.deploy import direct_conv_isa
    if not direct_conv_isa():
        pytest.skip('the conv engine does not run here')
    bench = script_module('benchmarks', 'conv_cpu.py')
    times = bench.run_sum(8, 16, 2, channels=2)
    assert set(times) == {'torch.add', 'sum_inputs'} and all(t > 0 for t in times.values())


def test_correlation_tiles_benchmark_checks_its_sums_and_times_both_layouts(tmp_path):
    """``benchmarks/correlation_tiles.cpp`` (the argmax's AVX2 tiles from
    ``csrc/cpu/correlation_fma.h`` against the core's peak) builds as its header says, finds
    both layouts' sums equal to the scalar ones, prints a rate for the peak and each layout,
    and refuses a bad count in one line (exit 2)."""
    import platform
    import re
    import shutil
    import subprocess
    if platform.machine() not in ('x86_64', 'AMD64') or shutil.which('g++') is None:
        pytest.skip('an x86-64 benchmark, built with g++')
    exe = tmp_path / 'correlation_tiles'
    subprocess.run(['g++', '-O3', '-std=c++17', '-o', str(exe),
                    osp.join(ROOT, 'benchmarks', 'correlation_tiles.cpp')], check=True,
                   timeout=300)
    proc = subprocess.run([str(exe), '2', '2', '3'], capture_output=True, text=True, timeout=120)
    if proc.returncode == 2 and 'no AVX2 + FMA' in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('same sums: both layouts equal the scalar sums bit for bit')
    rates = re.findall(r'^(peak|16 runs|8 runs).*?([0-9.]+) vector multiply-adds a TSC cycle',
                       proc.stdout, re.M)
    assert [name for name, _ in rates] == ['peak', '16 runs', '8 runs']
    assert all(float(rate) > 0 for _, rate in rates)
    bad = subprocess.run([str(exe), '1', '0'], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ''
    assert bad.stderr.splitlines() == ["correlation_tiles: REPS must be a positive integer, "
                                       "got '0'"]
