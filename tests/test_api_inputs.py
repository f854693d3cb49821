"""The Python API as users call it: inputs checked in one line, one model shared by threads,
the fast copy used in and out of inference mode, and the tiling's overlap of every fast form."""
import copy
import pickle
import threading
import warnings

import numpy as np
import pytest
import torch

import mtu_toolkit.models  # noqa: F401
from mtu_toolkit.apis import deblur_frames
from mtu_toolkit.apis.tiling import recommended_overlap
from mtu_toolkit.deploy import optimize_for_inference
from mtu_toolkit.registry import MODELS


def tiny(units=1, blocks=1, d=2):
    torch.manual_seed(0)
    return MODELS.build(dict(type='MTURestorer', backbone=dict(
        type='MTUNet', num_units=units, channels=4, num_blocks=blocks, weight_init='kaiming',
        mc_head=dict(type='CorrelationMCHead', max_displacement=d)))).eval()


def clip(seed, t=3, h=24, w=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, 3, h, w), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize('frames, error, match', [
    (np.zeros((3, 3, 8, 8), np.uint8), TypeError, 'must be a tensor'),
    (torch.zeros(3, 8, 8), ValueError, r'must be RGB .* got shape \(3, 8, 8\)'),
    (torch.zeros(2, 8, 8, 3), ValueError, 'must be RGB'),
    (torch.zeros(0, 3, 8, 8), ValueError, 'hold no pixel'),
    (torch.zeros(2, 3, 8, 8, dtype=torch.bool), TypeError, 'got torch.bool'),
    (torch.zeros(2, 3, 8, 8, dtype=torch.int64), TypeError, 'got torch.int64'),
    (torch.full((2, 3, 8, 8), 255.), ValueError, r'read in \[0, 1\], got values from 255 to 255'),
    (torch.full((2, 3, 8, 8), float('nan')), ValueError, 'got values from nan to nan'),
])
def test_infer_clip_names_what_is_wrong(frames, error, match):
    with pytest.raises(error, match=match):
        tiny().infer_clip(frames)


def test_infer_clip_reads_any_float_as_float32():
    model, x = tiny(), clip(0).float() / 255
    ref = model.infer_clip(x)
    assert torch.equal(model.infer_clip(x.double()), ref)
    assert torch.equal(model.infer_clip(clip(0)), ref)  # uint8 = float / 255


def test_deblur_frames_checks_each_frame_and_takes_views():
    model = tiny()
    rgb = [f.permute(1, 2, 0).numpy() for f in clip(1)]
    ref = [r for _, r in deblur_frames(model, rgb)]
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in rgb]
    views = [r for _, r in deblur_frames(model, [f[..., ::-1] for f in bgr])]  # negative strides
    assert all(np.array_equal(a, b) for a, b in zip(ref, views))
    for frames, match in (([rgb[0].astype(np.float32)], 'expected uint8'),
                          ([rgb[0][..., :1]], r'expected an \(H, W, 3\)'),
                          ([rgb[0], rgb[1][:8]], 'frame 1 is 32x8, the first frame 32x24')):
        with pytest.raises((TypeError, ValueError), match=match):
            list(deblur_frames(model, frames))


def test_deblur_frames_from_one_refilled_buffer():
    """A source that refills one array (a camera's buffer, cv2's read(image=buf)) gives the
    frames of distinct arrays, and each blurry frame yielded is the one read then."""
    model = tiny()
    rgb = [f.permute(1, 2, 0).numpy() for f in clip(5, t=5)]
    ref = [r for _, r in deblur_frames(model, rgb)]
    buffer = np.empty(rgb[0].shape, np.uint8)  # C-contiguous, as a camera fills it

    def refilled():
        for f in rgb:
            buffer[...] = f
            yield buffer

    pairs = list(deblur_frames(model, refilled()))
    assert all(np.array_equal(b, f) for (b, _), f in zip(pairs, rgb))
    assert all(np.array_equal(r, f) for (_, r), f in zip(pairs, ref))


def _kept(model):
    return [m._kept for m in model.modules() if hasattr(m, '_kept')]


@pytest.mark.parametrize('mode', ['eager', 'direct', 'frozen'])
def test_one_model_shared_by_two_threads(mode):
    """Kept buffers (the window; in the fast copy also the reused conv outputs, the inputs'
    sums, the normalised motion features, the warp's output, the argmax's scratch) belong to
    the model's first thread: two threads on one fast copy gave frames 15 levels off, without
    a word."""
    model = tiny(units=2, blocks=1)
    model = model if mode == 'eager' else optimize_for_inference(model, mode=mode)
    clips = [clip(2, t=4, h=128, w=160), clip(3, t=4, h=128, w=160)]
    refs = [model.infer_clip(c) for c in clips]  # uint8: converted through the window buffer
    got = [[], []]

    def work(i):
        for _ in range(3):
            got[i].append(model.infer_clip(clips[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert all(torch.equal(o, refs[i]) for o in got[i])
    assert any(k._buffers for k in _kept(model))


def test_a_pickled_fast_model_takes_no_kept_buffer_along():
    """multiprocessing moves pickled tensors into shared memory: kept buffers sent to a worker
    were written by both processes (wrong frames; a segmentation fault when the argmax's shared
    scratch had to grow)."""
    model = tiny(units=2, blocks=1)
    fast = optimize_for_inference(model, mode='direct')
    frames = clip(4, t=4, h=128, w=160)
    ref = fast.infer_clip(frames)
    assert any(k._buffers for k in _kept(fast))
    for copied in (pickle.loads(pickle.dumps(fast)), copy.deepcopy(fast)):
        assert all(k._owner is None and not k._buffers for k in _kept(copied))
        assert torch.equal(copied.infer_clip(frames), ref)
        assert torch.equal(copied.infer_clip(clip(5, t=4, h=160, w=192)),
                           fast.infer_clip(clip(5, t=4, h=160, w=192)))


@pytest.mark.parametrize('how', ['deepcopy', 'pickle'])
def test_a_copy_is_owned_by_the_first_thread_that_uses_it(how):
    model, frames = tiny(), clip(5)
    ref = model.infer_clip(frames)  # this thread now owns model's window buffer
    copied = (copy.deepcopy(model) if how == 'deepcopy'
              else pickle.loads(pickle.dumps(model)))
    assert copied._kept._owner is None and not copied._kept._buffers
    windows, out = [], []
    convert = copied._network_window

    def recording(window):
        windows.append(convert(window))  # all kept alive: fresh buffers could not share memory
        return windows[-1]

    copied._network_window = recording
    worker = threading.Thread(target=lambda: out.append(copied.infer_clip(frames)))
    worker.start()
    worker.join()
    assert len(windows) == 3 and len({w.data_ptr() for w in windows}) == 1
    assert copied._kept._owner == worker.ident
    assert torch.equal(out[0], ref)


def test_the_fast_copy_after_the_streaming_api_works_outside_inference_mode():
    model = tiny()
    fast = optimize_for_inference(model, mode='direct')
    frames = [f.permute(1, 2, 0).numpy() for f in clip(4, h=256, w=352)]  # outputs >= 1 MiB
    list(deblur_frames(fast, frames))  # (under inference_mode: the pool's buffers made there)
    for h, w in [(256, 352), (288, 384)]:  # the larger one grows the kept argmax workspace
        x = clip(4, h=h, w=w).float() / 255
        with torch.no_grad():
            out = fast.infer_clip(x)
        torch.testing.assert_close(out, model.infer_clip(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize('mode', ['direct', 'frozen'])
def test_recommended_overlap_of_every_fast_form(mode):
    model = tiny(units=2)
    fast = optimize_for_inference(model, mode=mode)
    assert recommended_overlap(fast) == recommended_overlap(model)


@pytest.mark.parametrize('frame, lost', [(np.zeros((8, 8, 4), np.uint8), 'the alpha channel'),
                                         (np.zeros((8, 8, 3), np.uint16), '16-bit values')])
def test_a_frame_folder_says_what_reading_drops(tmp_path, frame, lost):
    import cv2
    from mtu_toolkit.apis import open_reader
    cv2.imwrite(str(tmp_path / '0.png'), frame)
    with pytest.warns(UserWarning, match=lost):
        open_reader(str(tmp_path))
    cv2.imwrite(str(tmp_path / '0.png'), np.zeros((8, 8, 3), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        open_reader(str(tmp_path))


@pytest.mark.parametrize('mode', ['direct', 'frozen'])
def test_loading_weights_into_a_fast_copy_is_refused(mode):
    """It said 'All keys matched' (direct) and ran the weights it was made with."""
    a, b = tiny(), tiny(units=1, blocks=1, d=2)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.1)
    fast = optimize_for_inference(a, mode=mode)
    with pytest.raises(RuntimeError, match='load the weights into the restorer, then call '
                       'optimize_for_inference again'):
        fast.load_state_dict(b.state_dict())
    frames = clip(6)
    assert torch.allclose(fast.infer_clip(frames), a.infer_clip(frames), atol=1e-5)
    a.load_state_dict(b.state_dict())  # the restorer itself still loads
    again = copy.deepcopy(fast)  # (the refusal survives a copy)
    with pytest.raises(RuntimeError, match='optimize_for_inference'):
        again.load_state_dict(b.state_dict())


def test_a_stream_checks_its_frames_as_infer_clip_checks_a_clip():
    """push took floats in 0..255 (every pixel out at 1.0), uint8 and float frames mixed in
    one clip (the bytes read as [0, 1] floats), and a new size mid-clip (a raw stack error)."""
    model = tiny()
    frames = clip(7, t=4)
    stream = model.stream()
    with pytest.raises(ValueError, match=r'^floating point frame: values are read in \[0, 1\], '
                       r'got values from 0 to 255'):
        stream.push(torch.full((3, 24, 32), 255.).index_fill_(0, torch.tensor([0]), 0))
    with pytest.raises(ValueError, match=r'^frame must be RGB \(3, H, W\) or \(B, 3, H, W\), '
                       r'got shape \(1, 1, 3, 24, 32\)'):
        stream.push(frames[:1, None])
    assert stream.push(frames[0]) == []
    with pytest.raises(ValueError, match=r'^frame 1 is \(1, 3, 24, 32\) torch.float32, the '
                       r'frames before it \(1, 3, 24, 32\) torch.uint8: a clip holds frames of '
                       r'one size and type \(flush\(\) ends a clip\)$'):
        stream.push(frames[1].float() / 255)
    with pytest.raises(ValueError, match=r'^frame 1 is \(1, 3, 20, 32\) torch.uint8'):
        stream.push(frames[1, :, :20])
    outs = [o for f in frames[1:] for o in stream.push(f)] + stream.flush()
    assert torch.equal(torch.cat(outs), model.infer_clip(frames))
    # a refused frame changes nothing: the stream then gives infer_clip's frames; after
    # flush() a new clip may have another size and type
    stream.push(frames[0, :, :20].float() / 255)
    assert len(stream.flush()) == 1


def test_a_host_with_float64_as_default_dtype_runs_inference():
    """torch.set_default_dtype(torch.float64) in the host program gave a float64 model that no
    frame could run through ('Input type (float) and bias type (double)')."""
    import os.path as osp
    from mtu_toolkit.apis import init_restorer
    config = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'mtu',
                      'mtu1_gopro.py')
    frames = clip(8, t=3, h=48, w=64)
    torch.manual_seed(0)
    ref = init_restorer(config).infer_clip(frames)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = init_restorer(config)
        assert next(model.parameters()).dtype == torch.float32
        assert torch.get_default_dtype() == torch.float64  # the host's setting is kept
        assert torch.equal(model.infer_clip(frames), ref)
        assert torch.allclose(model.infer_clip(frames.double() / 255), ref, atol=1e-6)
        fast = optimize_for_inference(model)
        assert torch.allclose(fast.infer_clip(frames), ref, atol=1e-5)
        assert len(list(deblur_frames(model, [f.permute(1, 2, 0).numpy() for f in frames]))) == 3
    finally:
        torch.set_default_dtype(default)
