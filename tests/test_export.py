"""Export of the single-frame step: TorchScript gives the Python model's frames; ONNX where
the onnx package (and onnxruntime, for the numbers) is installed."""
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch

from mtu_toolkit import ops
from mtu_toolkit.deploy.export import (FrameStep, export_onnx, export_torchscript,
                                       run_step_module)
from mtu_toolkit.registry import MODELS

H, W = 28, 36  # multiples of 4 not needed; small to keep the 441-shift reference trace quick


pytestmark = pytest.mark.usefixtures('one_thread')


def tiny(mc_head=None, **backbone):
    import mtu_toolkit.models  # noqa: F401
    cfg = dict(type='MTUNet', num_units=2, channels=8, num_blocks=1, **backbone)
    if mc_head:
        cfg['mc_head'] = mc_head
    return MODELS.build(dict(type='MTURestorer', backbone=cfg)).eval()


def moving_clip(num=5):
    """A textured pattern moving 4 px per frame (so the matching finds real motion)."""
    g = torch.Generator().manual_seed(0)
    big = torch.rand(3, H, W + 4 * num, generator=g)
    big = torch.nn.functional.avg_pool2d(big[None], 3, 1, 1)[0]
    return torch.stack([big[:, :, 4 * k:4 * k + W] for k in range(num)])


def test_ops_run_their_references_while_tracing():
    """Export patches nothing: the ops switch to their traceable twins under a trace."""
    seen = []

    def step(f1, f2):
        seen.append(ops.uses_extension(f1))
        return ops.correlation_argmax(f1, f2, 2)

    f = torch.rand(1, 4, 6, 6)
    assert ops.uses_extension(f) == ops.EXT_AVAILABLE
    with torch.no_grad():
        traced = torch.jit.trace(step, (f, f.flip(-1)), check_trace=False)
    assert seen == [False]
    assert torch.equal(traced(f, f.flip(-1)), ops.correlation_argmax(f, f.flip(-1), 2))


@pytest.mark.parametrize('mc_head', [None, dict(type='NoneMCHead'), dict(type='fan')],
                         ids=['correlation', 'none', 'fan'])
def test_torchscript_step_gives_the_python_frames(tmp_path, mc_head):
    model = tiny(mc_head)
    path = str(tmp_path / 'step.pt')
    export_torchscript(model, path, H, W)
    loaded = torch.jit.load(path)  # the saved file, not the in-memory trace
    clip = moving_clip()
    with torch.no_grad():
        got = run_step_module(loaded, clip)
        ref = model.infer_clip(clip)  # the Python model with the compiled ops
    assert got.shape == (5, 3, H, W)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_a_traced_step_refuses_another_frame_size(tmp_path):
    """Tracing fixes the frame size: the saved step checks it on every call (another size ran
    without a word and gave wrong frames, or a 23-line interpreter traceback)."""
    model = tiny()
    path = str(tmp_path / 'step.pt')
    export_torchscript(model, path, H, W)
    loaded = torch.jit.load(path)
    clip = moving_clip(2)
    for bad in (clip[..., :H - 4, :], clip[..., :W - 3], clip[..., :5, :]):
        h, w = bad.shape[-2:]
        with pytest.raises(ValueError, match=rf'^this step was traced for {W}x{H} frames, got '
                           rf'{w}x{h}: export one for that size \(tools/export.py --size '
                           rf'{w}x{h}\)$'):
            run_step_module(loaded, bad)
    window = clip[[0, 0, 0, 1, 1]][None, ..., :H - 4, :]
    with pytest.raises(torch.jit.Error, match='this step was traced for'):
        loaded.first(window)  # called directly: TorchScript's error, naming the sizes
    with torch.no_grad():  # its own size still gives the Python frames
        torch.testing.assert_close(run_step_module(loaded, clip), model.infer_clip(clip),
                                   rtol=0, atol=1e-5)


def test_python_step_module_matches_stream():
    """FrameStep (what is exported) is the restorer's stream with the state made explicit."""
    model = tiny()
    clip = moving_clip()
    with torch.no_grad():
        got = run_step_module(FrameStep(model), clip)
        stream = model.stream()
        ref = [o for f in clip for o in stream.push(f)] + stream.flush()
    torch.testing.assert_close(got, torch.cat(ref), rtol=0, atol=0)


@pytest.mark.skipif(importlib.util.find_spec('onnx') is None, reason='onnx not installed')
def test_onnx_export(tmp_path):
    import onnx
    model = tiny()
    step_path, first_path = export_onnx(model, str(tmp_path / 'step.onnx'), H, W)
    # the export leaves the model in eval mode (in training mode the MC head would take its
    # materialised-volume path)
    assert not any(m.training for m in model.modules())
    for p in (step_path, first_path):
        onnx.checker.check_model(onnx.load(p))
    assert osp.basename(first_path) == 'step_first.onnx'
    if importlib.util.find_spec('onnxruntime') is None:
        pytest.skip('onnxruntime not installed: checked the graphs only')
    import onnxruntime as ort
    first = ort.InferenceSession(first_path, providers=['CPUExecutionProvider'])
    step = ort.InferenceSession(step_path, providers=['CPUExecutionProvider'])
    clip = moving_clip()
    outs, state = [], None
    for t in range(clip.shape[0]):
        idx = [min(max(i, 0), clip.shape[0] - 1) for i in range(t - 2, t + 3)]
        window = clip[idx][None].numpy()
        if state is None:
            res = first.run(None, {'window': window})
        else:  # fed by name: output `restored` comes back as `restored_prev`, `motion0` as
            # `motion_prev0`, ...
            feed = dict(window=window)
            for out, value in zip(step.get_outputs()[1:], state):
                stem = out.name.rstrip('0123456789')
                feed[f'{stem}_prev{out.name[len(stem):]}'] = value
            names = [i.name for i in step.get_inputs()]
            assert set(names) <= set(feed), (names, sorted(feed))
            res = step.run(None, {n: feed[n] for n in names})
        outs.append(res[0][0])
        state = res[1:]
    with torch.no_grad():
        ref = model.infer_clip(clip).numpy()
    np.testing.assert_allclose(np.stack(outs), ref, rtol=0, atol=1e-4)


def test_export_after_frames_records_no_kept_or_pooled_buffer(tmp_path, monkeypatch):
    """After the model has restored frames it holds kept buffers (the converted window, the
    MC head's), and large results come from the recycled pool (at 720p every frame is over
    the pool's threshold; here the threshold is lowered to reach it at a small size). The
    trace recorded a pooled buffer as a constant it copied into, which ONNX refuses (the
    benchmark's export at 720p failed): exports record fresh tensors, and the traced step
    returns a new tensor each call."""
    from mtu_toolkit import memory
    monkeypatch.setattr(memory, 'RECYCLE_BYTES', 0)
    model = tiny()
    clip = moving_clip()
    with torch.no_grad():  # kept and pooled buffers, as in a benchmark or a server
        model.infer_clip((clip * 255).to(torch.uint8))
    traced = export_torchscript(model, str(tmp_path / 'step.pt'), H, W)
    window = clip[[0, 0, 0, 1, 2]][None]
    with torch.no_grad():
        first = traced.first(window)
        again = traced.first(window.flip(-1))
    assert first[0].data_ptr() != again[0].data_ptr()
    with torch.no_grad():
        torch.testing.assert_close(run_step_module(torch.jit.load(str(tmp_path / 'step.pt')),
                                                   clip),
                                   model.infer_clip(clip), rtol=0, atol=1e-5)
    if importlib.util.find_spec('onnx') is None:
        pytest.skip('onnx not installed: checked TorchScript only')
    import onnx
    for p in export_onnx(model, str(tmp_path / 'step.onnx'), H, W):
        onnx.checker.check_model(onnx.load(p))
