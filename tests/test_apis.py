"""Tests of mtu_toolkit.apis: frame I/O, safe strict checkpoint loading, the fused CPU model,
streaming equality with infer_clip, threads' error hand-over, atomic outputs, flat memory."""
import ctypes
import os
import shutil
import signal
import threading
import time
import traceback
import warnings

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from mtu_toolkit.apis import (CheckpointError, InputError, OutputError, check_state_dict,
                              deblur_frames, deblur_video, init_restorer, open_reader,
                              open_writer)
from mtu_toolkit.deploy import (DirectConv2d, default_mode, direct_conv_isa,
                                optimize_for_inference, tool_model)
from mtu_toolkit.deploy.conv_engine import conv_ext as ext
from mtu_toolkit.deploy.optimize import CompiledModule
from mtu_toolkit.apis.pipeline import BackgroundReader, BackgroundWriter
from mtu_toolkit.registry import MODELS

TINY = dict(type='MTURestorer', backbone=dict(type='MTUNet', num_units=2, channels=8,
                                              num_blocks=1))


pytestmark = pytest.mark.usefixtures('one_thread')


def tiny_restorer():
    import mtu_toolkit.models  # noqa: F401
    return MODELS.build(TINY).eval()


def moving_frames(num, h=36, w=44, step=3):
    """Real image content (astronaut) panned ``step`` px per frame: (H, W, 3) uint8 RGB."""
    img = data.astronaut()
    return [np.ascontiguousarray(img[120 + k:120 + k + h, 180 + step * k:180 + step * k + w])
            for k in range(num)]


def write_folder(folder, frames, names=None):
    os.makedirs(folder, exist_ok=True)
    for i, f in enumerate(frames):
        name = names[i] if names else f'{i:03d}.png'
        assert cv2.imwrite(os.path.join(folder, name), f[..., ::-1].copy())


# ---------------------------------------------------------------- frame I/O
def test_folder_reader_natural_order_and_roundtrip(tmp_path):
    frames = moving_frames(3)
    write_folder(tmp_path / 'in', frames, names=['f9.png', 'f10.png', 'f100.png'])
    reader = open_reader(str(tmp_path / 'in'), fps=30)
    assert reader.size == (44, 36) and reader.fps == 30 and reader.num_frames == 3
    for got, ref in zip(reader, frames):
        np.testing.assert_array_equal(got, ref)  # f9 before f10 before f100; RGB kept


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match='no such file'):
        open_reader(str(tmp_path / 'missing.mp4'))
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(InputError, match='no frames'):
        open_reader(str(tmp_path / 'empty'))
    write_folder(tmp_path / 'bad', moving_frames(2))
    (tmp_path / 'bad' / '002.png').write_bytes(b'not a png')
    with pytest.raises(InputError, match='002.png: unreadable'):
        list(open_reader(str(tmp_path / 'bad')))
    write_folder(tmp_path / 'sizes', [moving_frames(1)[0], moving_frames(1, h=20)[0]])
    with pytest.raises(InputError, match='001.png: frame is 44x20'):
        list(open_reader(str(tmp_path / 'sizes')))


def test_writers_are_atomic(tmp_path):
    frames = moving_frames(2)
    out = tmp_path / 'out.avi'
    writer = open_writer(str(out), 10, (44, 36))
    writer.write(frames[0])
    assert not out.exists()  # only the temporary file exists until commit
    writer.abort()
    assert os.listdir(tmp_path) == []
    writer = open_writer(str(tmp_path / 'dir'), 10, (44, 36))
    writer.write(frames[0])
    assert not (tmp_path / 'dir').exists()
    writer.commit()
    assert os.listdir(tmp_path / 'dir') == ['00000.png']
    with pytest.raises(OutputError, match='exists and is not empty'):
        open_writer(str(tmp_path / 'dir'), 10, (44, 36))
    with pytest.raises(OutputError, match="unknown video extension '.xyz'"):
        open_writer(str(tmp_path / 'o.xyz'), 10, (44, 36))


# ---------------------------------------------------------------- threads
def test_background_reader_reraises_in_order():
    def gen():
        yield 1
        yield 2
        raise ValueError('decoder broke')
    got = []
    with pytest.raises(ValueError, match='decoder broke'):
        for x in BackgroundReader(gen(), maxsize=1):
            got.append(x)
    assert got == [1, 2]


def test_background_reader_is_bounded_and_closes():
    produced = []

    def gen():
        for i in range(1000):
            produced.append(i)
            yield i
    reader = BackgroundReader(gen(), maxsize=2)
    time.sleep(0.2)
    assert len(produced) <= 4  # blocked by the full queue, not decoding the whole video
    reader.close()
    assert not any(t.name == 'mtu-reader' and t.is_alive() for t in threading.enumerate())


def test_background_writer_reports_errors():
    written = []

    def write(x):
        if x == 3:
            raise OSError('disk full')
        written.append(x)
    before = set(threading.enumerate())
    sink = BackgroundWriter(write, maxsize=1)
    with pytest.raises(OSError, match='disk full'):
        for i in range(10):
            sink.put(i)
            time.sleep(0.01)
        sink.close()
    assert written == [0, 1, 2]
    # close() after a failed put (what deblur_video's clean-up does) reports the error again
    # and ends the thread (left open, it waited for items forever)
    with pytest.raises(OSError, match='disk full'):
        sink.close()
    assert not [t for t in set(threading.enumerate()) - before if t.name == 'mtu-writer']


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt in the main thread (as in a tool), whatever pytest set."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_once(q, name):
    """Make a Ctrl-C arrive inside ``q``'s ``_put`` / ``_get``, i.e. while Queue.put / get hold
    the queue's lock: where its exception could leave a woken waiter on the condition's list
    (the next wake-up went to that entry and the writer thread slept through the end marker)."""
    real = getattr(q, name)

    def interrupted(*args):
        setattr(q, name, real)
        signal.raise_signal(signal.SIGINT)
        return real(*args)
    setattr(q, name, interrupted)


def _raised_in_queue_code(info):
    return any(os.path.basename(f.filename) in ('queue.py', 'threading.py')
               for f in traceback.extract_tb(info.tb))


def test_a_signal_inside_the_writer_queue_acts_once_the_put_is_done(sigint_raises):
    written = []
    sink = BackgroundWriter(written.append, maxsize=2)
    _interrupt_once(sink._queue, '_put')
    with pytest.raises(KeyboardInterrupt) as info:
        sink.put(1)
    assert not _raised_in_queue_code(info)
    sink.put(2)
    sink.close()
    assert written == [1, 2]


def test_a_signal_inside_the_reader_queue_acts_once_the_get_is_done(sigint_raises):
    reader = BackgroundReader(iter(range(5)), maxsize=2)
    _interrupt_once(reader._queue, '_get')
    with pytest.raises(KeyboardInterrupt) as info:
        for _ in reader:
            pass
    assert not _raised_in_queue_code(info)
    assert not reader._thread.is_alive()  # closed on the way out


def test_background_writer_abort_drops_what_is_queued():
    written, started, gate = [], threading.Event(), threading.Event()

    def write(x):
        started.set()
        gate.wait()
        written.append(x)
    sink = BackgroundWriter(write, maxsize=2)
    sink.put(0)
    started.wait(10)
    sink.put(1)
    sink.put(2)
    threading.Timer(0.2, gate.set).start()
    sink.abort()
    assert written == [0] and not sink._thread.is_alive()


# ---------------------------------------------------------------- checkpoints
def test_check_state_dict_one_line_errors():
    model = tiny_restorer()
    state = model.state_dict()
    check_state_dict(model, state, 'ok')  # exact fit passes
    bad = dict(state)
    bad.pop('backbone.out_conv.weight')
    bad['extra.weight'] = torch.zeros(1)
    bad['backbone.base_conv.0.bias'] = torch.zeros(5)
    with pytest.raises(CheckpointError) as err:
        check_state_dict(model, bad, 'checkpoint c.pth for config m.py')
    msg = str(err.value)
    assert '\n' not in msg and msg.startswith('checkpoint c.pth for config m.py')
    assert '1 missing key (backbone.out_conv.weight)' in msg
    assert '1 unexpected key (extra.weight)' in msg
    assert 'backbone.base_conv.0.bias (5,) vs (8,)' in msg


def test_init_restorer_loads_weights_only(tmp_path):
    model = tiny_restorer()
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(f"default_scope = 'mtu'\nmodel = {TINY!r}\n")
    torch.save(dict(state_dict=model.state_dict(), meta=dict(iter=3, seed=np.int64(1))),
               tmp_path / 'c.pth')
    loaded = init_restorer(str(cfg), str(tmp_path / 'c.pth'))
    assert not loaded.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    (tmp_path / 'evil.pth').write_bytes(b'garbage')
    with pytest.raises(CheckpointError, match='evil.pth'):
        init_restorer(str(cfg), str(tmp_path / 'evil.pth'))


# ---------------------------------------------------------------- inference
def test_optimized_model_matches_eager():
    model = tiny_restorer()
    clip = torch.rand(5, 3, 30, 42)  # not multiples of 4: padded and cropped
    frozen = optimize_for_inference(model, mode='frozen')
    assert frozen is not model and isinstance(frozen.backbone.units[0], torch.jit.ScriptModule)
    direct = optimize_for_inference(model, mode='direct')  # AVX2 kernels too, where those run
    assert isinstance(direct.backbone.units[0].enc1.kernel, DirectConv2d)
    assert direct.state_dict().keys() == model.state_dict().keys()
    # the default: the direct kernels wherever they run (AVX-512, AVX2)
    assert default_mode() == ('direct' if direct_conv_isa() else 'frozen')
    default = optimize_for_inference(model).backbone
    if default_mode() == 'direct':
        assert isinstance(default.units[0].enc1.kernel, DirectConv2d)
    else:
        assert isinstance(default.units[0], torch.jit.ScriptModule)
    # every stride-1 layer by Winograd / none (the tiny model's layers are too narrow for 'auto')
    winograd = {flag: optimize_for_inference(model, mode='direct', winograd=flag)
                for flag in (True, False)}
    if direct_conv_isa():
        def winograd_layers(fast):
            return [c.winograd for c in fast.modules() if isinstance(c, DirectConv2d)]
        assert any(winograd_layers(winograd[True]))
        assert not any(winograd_layers(winograd[False]))
    with torch.inference_mode():
        ref = model.infer_clip(clip)
        torch.testing.assert_close(frozen.infer_clip(clip), ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(direct.infer_clip(clip), ref, rtol=0, atol=1e-5)
        for fast in winograd.values():
            torch.testing.assert_close(fast.infer_clip(clip), ref, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match='mode must be one of'):
        optimize_for_inference(model, mode='fast')
    with pytest.raises(ValueError, match='contradicts'):
        optimize_for_inference(model, compile=True, mode='direct')


def test_tool_model_picks_the_mode():
    model = tiny_restorer()
    assert tool_model(model, eager=True) is model
    fast = tool_model(model)
    assert (fast is model) == (not direct_conv_isa())
    if direct_conv_isa():
        # CPUs with AVX2 only get the direct kernels as well; CPUs without them the PyTorch
        # model (the kernels' choice is forced here, as on such CPUs)
        for isa, direct in (('avx2', True), ('', False)):
            ext.conv_direct_use_isa(isa)
            try:
                assert default_mode() == ('direct' if direct else 'frozen')
                assert (tool_model(model) is model) == (not direct)
            finally:
                ext.conv_direct_use_isa('best')
    with pytest.raises(ValueError, match='exclude each other'):
        tool_model(model, compile=True, eager=True)


@pytest.mark.skipif(shutil.which(os.environ.get('CXX', 'g++')) is None,
                    reason='torch.compile needs a C++ compiler')
def test_compiled_fused_network_matches_eager():
    model = tiny_restorer()
    fast = optimize_for_inference(model, compile=True)
    assert all(isinstance(unit, CompiledModule) for unit in fast.backbone.units)
    clip = torch.rand(3, 3, 16, 20)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter('error')  # a failed compile would fall back with a warning
        torch.testing.assert_close(fast.infer_clip(clip), model.infer_clip(clip),
                                   rtol=0, atol=1e-4)
    assert all(unit._compiled is not None for unit in fast.backbone.units)
    assert fast.backbone.units[0].module.enc1[0].weight.is_contiguous(
        memory_format=torch.channels_last)


@pytest.mark.skipif(shutil.which(os.environ.get('CXX', 'g++')) is None,
                    reason='torch.compile needs a C++ compiler')
def test_compile_mode_compiles_a_size_once():
    """The first frame of a size compiles; the next frames of that size run the same graphs
    (a cache filled during the first compiled call made dynamo compile again on the second)."""
    from torch._dynamo.utils import counters
    model = tiny_restorer()
    fast = optimize_for_inference(model, compile=True)
    clip = torch.rand(3, 3, 16, 20)
    with torch.inference_mode():
        fast.infer_clip(clip[:1])
        graphs = counters['stats']['unique_graphs']
        fast.infer_clip(clip)
    assert counters['stats']['unique_graphs'] == graphs


@pytest.mark.skipif(shutil.which(os.environ.get('CXX', 'g++')) is None,
                    reason='torch.compile needs a C++ compiler')
def test_compile_mode_compiles_each_size_up_to_its_own_bound(monkeypatch):
    """torch's recompile limit (lowered here to 1) does not leave a second frame size
    uncompiled; past CompiledModule.MAX_SHAPES (lowered to 2) a new size runs eager, said in
    one warning, and the sizes compiled before stay compiled."""
    import torch._dynamo.config as dynamo_config
    from torch._dynamo.utils import counters
    monkeypatch.setattr(dynamo_config, 'recompile_limit' if hasattr(
        dynamo_config, 'recompile_limit') else 'cache_size_limit', 1)  # (torch < 2.7)
    monkeypatch.setattr(CompiledModule, 'MAX_SHAPES', 2)
    model = tiny_restorer()
    fast = optimize_for_inference(model, compile=True)
    graphs = counters['stats']['unique_graphs']

    def check(size):
        clip = torch.rand(1, 3, *size)
        torch.testing.assert_close(fast.infer_clip(clip), model.infer_clip(clip),
                                   rtol=0, atol=1e-4)
        return counters['stats']['unique_graphs'] - graphs

    with torch.inference_mode():
        first = [check((16, 20)) for _ in range(2)][-1]
        second = [check((20, 24)) for _ in range(2)][-1]
        assert second > first  # compiled, past torch's limit
        assert check((16, 20)) == second
        with pytest.warns(UserWarning, match='compiled for 2 input shapes'):
            assert check((24, 28)) == second
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            assert check((20, 24)) == second


def test_deblur_frames_equals_infer_clip():
    model = tiny_restorer()
    frames = moving_frames(6)
    got = list(deblur_frames(model, iter(frames)))
    assert len(got) == 6
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        ref = (model.infer_clip(clip).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1)
    for (blurry, restored), f, r in zip(got, frames, ref.numpy()):
        np.testing.assert_array_equal(blurry, f)
        diff = np.abs(restored.astype(int) - r)  # a float ulp may flip one rounding
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_failure_midway_leaves_no_output(tmp_path):
    frames = moving_frames(6)
    write_folder(tmp_path / 'in', frames)
    (tmp_path / 'in' / '004.png').write_bytes(b'')  # breaks decoding after 4 frames
    with pytest.raises(InputError, match='004.png'):
        deblur_video(tiny_restorer(), str(tmp_path / 'in'), str(tmp_path / 'out.mp4'),
                     progress=False)
    assert sorted(os.listdir(tmp_path)) == ['in']  # no output, no temporary file


@pytest.mark.parametrize('failing', ['BackgroundReader', 'BackgroundWriter', 'ProgressLine'])
def test_failure_while_setting_up_leaves_nothing(tmp_path, monkeypatch, failing):
    """An error (or Ctrl-C) between opening the output and the first frame removes the
    output's temporary, and leaves no reader thread or open input behind."""
    import threading

    import mtu_toolkit.apis.inference as inference
    frames = moving_frames(4)
    write_folder(tmp_path / 'in', frames)
    deblur_video(tiny_restorer(), str(tmp_path / 'in'), str(tmp_path / 'in.mp4'), progress=False)

    def refuse(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, failing, refuse)
    before = set(threading.enumerate())
    for source, out in (('in', 'out.mp4'), ('in.mp4', 'frames_out')):
        with pytest.raises(KeyboardInterrupt):
            deblur_video(tiny_restorer(), str(tmp_path / source), str(tmp_path / out),
                         progress=False)
    assert sorted(os.listdir(tmp_path)) == ['in', 'in.mp4']
    assert [t.name for t in set(threading.enumerate()) - before] == []


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
        'fordblks', 'keepcost')]


def _libc_mallinfo2():
    try:
        libc = ctypes.CDLL('libc.so.6')
        libc.mallinfo2.restype = _MallInfo2
        return libc.mallinfo2
    except (OSError, AttributeError):  # not glibc >= 2.33
        return None


_MALLINFO2 = _libc_mallinfo2()


def _heap_in_use():
    """Bytes malloc'ed and not yet freed, all threads' arenas and mmapped blocks included.

    Unlike RSS this ignores pages the allocator keeps after a free (its high-water mark), so it
    measures what the pipeline holds; torch's and numpy's CPU buffers all come from malloc."""
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


def _peak_heap_during(fn):
    """Peak heap in use while ``fn`` runs, sampled every millisecond."""
    peak, done = [_heap_in_use()], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _heap_in_use())
            time.sleep(0.001)
    t = threading.Thread(target=sample)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    return peak[0]


@pytest.mark.skipif(_MALLINFO2 is None, reason='needs glibc mallinfo2')
def test_memory_stays_flat_with_video_length(tmp_path):
    """3x the frames must not raise peak memory: keeping every frame would add > 20 MB here
    (24 extra 480x640 frames, 0.9 MB each as uint8 input alone). Short queues, so that the
    short run already fills them (their bound is the flat part)."""
    h, w = 480, 640
    img = cv2.resize(data.astronaut(), (w + 100, h))
    for n in (12, 36):
        writer = cv2.VideoWriter(str(tmp_path / f'in{n}.avi'), cv2.VideoWriter_fourcc(*'MJPG'),
                                 25, (w, h))
        for k in range(n):
            writer.write(np.ascontiguousarray(img[:, 3 * k:3 * k + w, ::-1]))
        writer.release()
    model = MODELS.build(dict(type='MTURestorer', backbone=dict(
        type='MTUNet', num_units=1, channels=4, num_blocks=0))).eval()
    run = lambda n: deblur_video(model, str(tmp_path / f'in{n}.avi'),  # noqa: E731
                                 str(tmp_path / f'out{n}.avi'), progress=False,
                                 queue_size=2, overwrite=True)
    run(12)  # warm-up: codec and model buffers allocated once
    short = _peak_heap_during(lambda: run(12))
    long = _peak_heap_during(lambda: run(36))
    assert long - short < 8e6, f'peak grew by {(long - short) / 1e6:.1f} MB for 3x frames'
