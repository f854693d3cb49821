import pytest
import torch
from mmengine.optim import OptimWrapper

import mtu_toolkit.models  # noqa: F401
from mtu_toolkit.registry import MODELS


def _restorer(units=2, **kwargs):
    return MODELS.build(dict(
        type='MTURestorer',
        backbone=dict(type='MTUNet', num_units=units, channels=8, num_blocks=1,
                      mc_head=dict(type='CorrelationMCHead', max_displacement=3)),
        **kwargs))


def _batch(b=2, t=3, h=20, w=24, flow=True):
    inputs = torch.randint(0, 256, (b, t + 4, 3, h, w), dtype=torch.uint8)
    samples = dict(gt=torch.randint(0, 256, (b, t, 3, h, w), dtype=torch.uint8),
                   key=['seq%d' % i for i in range(b)],
                   frame_indices=[torch.tensor([i] * b) for i in range(t)])
    if flow:
        samples['flow'] = torch.randn(b, t, 2, h, w) * 4
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('size', [(67, 93), (5, 7), (32, 32)])
def test_any_frame_size(size):
    model = _restorer().eval()
    frames = torch.rand(4, 3, *size)
    out = model.infer_clip(frames)
    assert out.shape == (4, 3, *size)
    # the frame is reflect-padded to multiples of 4 and cropped back: the same as running
    # the network on the padded frames and cropping their outputs
    from mtu_toolkit.models.restorers.padding import pad_to_multiple
    padded = model.infer_clip(pad_to_multiple(frames))
    torch.testing.assert_close(out, padded[..., :size[0], :size[1]], rtol=0, atol=1e-6)


def test_streaming_equals_clip_inference():
    model = _restorer(units=3).eval()
    frames = torch.rand(2, 7, 3, 67, 93)
    clip = model.infer_clip(frames)
    stream, outs = model.stream(), []
    for t in range(frames.shape[1]):
        ready = stream.push(frames[:, t])
        # the look-ahead is two frames: frame t - 2 comes out when frame t goes in
        assert len(ready) == (1 if t >= 2 else 0)
        outs += ready
    outs += stream.flush()
    assert len(outs) == 7
    assert torch.equal(torch.stack(outs, 1), clip)
    assert len(stream.frames) <= 5  # only the window is kept


def test_a_stream_owns_what_it_keeps_and_the_caller_what_it_gets():
    """The stream copies each pushed frame (a caller may refill one buffer), the frames it
    returns are not its recurrent state (a caller may change them in place), and flush() ends
    the clip: the next push starts a new one. Each gives infer_clip's frames."""
    model = _restorer().eval()
    torch.manual_seed(0)
    clips = [torch.rand(1, 5, 3, 20, 24), torch.rand(1, 4, 3, 20, 24)]
    stream, buffer = model.stream(), torch.empty(1, 3, 20, 24)
    for clip in clips:
        outs = []
        for t in range(clip.shape[1]):
            for out in stream.push(buffer.copy_(clip[:, t])):  # one buffer, refilled
                outs.append(out.clone())
                out.mul_(255)  # e.g. for display
        for out in stream.flush():
            outs.append(out.clone())
            out.zero_()
        assert torch.equal(torch.stack(outs, 1), model.infer_clip(clip))
    assert not model.infer_clip(clips[0]).requires_grad  # inference records no graph
    assert not outs[0].requires_grad


def test_windows_are_converted_into_one_kept_buffer():
    """A uint8 window (scaled to [0, 1]) or a strided one (frames permuted from HWC) is
    written into one buffer kept from frame to frame, with the frames of a plain float
    window; a contiguous float window is read as it is; the caller's window is untouched."""
    model = _restorer().eval()
    torch.manual_seed(0)
    bytes_ = torch.randint(0, 256, (1, 5, 20, 24, 3), dtype=torch.uint8)
    plain = bytes_.permute(0, 1, 4, 2, 3).float().div(255).contiguous()
    ref, _ = model.restore_frame(plain, None)
    assert not model._kept._buffers
    seen = set()
    for window in (bytes_.permute(0, 1, 4, 2, 3),                      # uint8, strided
                   bytes_.permute(0, 1, 4, 2, 3).contiguous(),         # uint8
                   bytes_.float().div(255).permute(0, 1, 4, 2, 3)):    # float, strided
        kept = window.clone()
        out, _ = model.restore_frame(window, None)
        assert torch.equal(out, ref) and torch.equal(window, kept)
        seen.add(model._kept._buffers['window'].data_ptr())
    assert len(seen) == 1


def test_short_clips_stream_like_clip_inference():
    model = _restorer().eval()
    for n in (1, 2):
        frames = torch.rand(n, 3, 16, 16)
        stream = model.stream()
        outs = sum((stream.push(f) for f in frames), []) + stream.flush()
        assert torch.equal(torch.cat(outs), model.infer_clip(frames))


def test_predict_mode_with_clamped_context_equals_infer_clip():
    model = _restorer().eval()
    frames = torch.rand(5, 3, 20, 24)
    idx = torch.tensor([0, 0, 0, 1, 2, 3, 4, 4, 4])
    data = dict(inputs=(frames[idx] * 255).round().byte()[None],
                data_samples=dict(gt=torch.zeros(1, 5, 3, 20, 24, dtype=torch.uint8),
                                  key=['a'], frame_indices=[torch.tensor([i]) for i in range(5)]))
    results = model.test_step(data)
    assert len(results) == 1 and results[0]['key'] == 'a'
    assert results[0]['frame_indices'] == [0, 1, 2, 3, 4]
    expected = model.infer_clip(data['inputs'][0, 2:-2].float() / 255)
    assert torch.equal(results[0]['pred'], expected)


def test_gradients_reach_every_trainable_parameter():
    model = _restorer(units=3).train()
    data = model.data_preprocessor(_batch(t=2), training=True)
    losses = model(data['inputs'], data['data_samples'], mode='loss')
    assert set(losses) == {'loss_deblur', 'loss_motion'}
    sum(losses.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_train_step_steps_once_per_frame_with_detached_state():
    model = _restorer().train()
    optim = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3))
    steps = []
    original = optim.step
    optim.step = lambda *a, **k: steps.append(1) or original(*a, **k)
    before = [p.detach().clone() for p in model.parameters()]
    log_vars = model.train_step(_batch(t=4), optim)
    assert len(steps) == 4
    assert set(log_vars) == {'loss', 'loss_deblur', 'loss_motion'}
    assert all(torch.isfinite(v) for v in log_vars.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_motion_loss_without_flow_is_a_clear_error():
    model = _restorer().train()
    data = model.data_preprocessor(_batch(flow=False), training=True)
    with pytest.raises(KeyError, match='flow'):
        model(data['inputs'], data['data_samples'], mode='loss')
    model = _restorer(motion_loss=None).train()
    assert set(model(data['inputs'], data['data_samples'], mode='loss')) == {'loss_deblur'}


def test_half_precision_option_is_validated():
    with pytest.raises(ValueError, match='infer_dtype'):
        _restorer(infer_dtype='int8')
    model = _restorer(infer_dtype='bfloat16').eval()
    frames = torch.rand(3, 3, 16, 16)
    half = model.infer_clip(frames)
    assert half.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: within ~1e-2 of the float32 frames, not equal to them
    model.infer_dtype = None
    full = model.infer_clip(frames)
    err = (half - full).abs()
    assert err.max() < 3e-2 and err.max() > 0


def test_float16_inference_runs_in_float32_on_the_cpu():
    # the "hp" configs' float16 is a GPU setting: emulated on a CPU it took ~10x float32's time
    model = _restorer(infer_dtype='float16').eval()
    frames = torch.rand(3, 3, 16, 16)
    with pytest.warns(UserWarning, match="'float16' runs in float32 on the CPU"):
        half = model.infer_clip(frames)
    assert model.autocast_dtype(torch.device('cpu')) is None
    assert model.autocast_dtype(torch.device('cuda')) == torch.float16
    model.infer_dtype = None
    assert torch.equal(half, model.infer_clip(frames))
    # and the fast CPU copy applies to it (it returned the eager model itself before)
    from mtu_toolkit.deploy import optimize_for_inference
    model.infer_dtype = 'float16'
    with pytest.warns(UserWarning):
        assert optimize_for_inference(model, mode='frozen') is not model
