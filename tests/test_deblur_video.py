"""tools/deblur_video.py end to end: a real video in and out, equality with the Python API,
and the bad inputs (exit code, one-line message, nothing written)."""
import importlib.util
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from mtu_toolkit.apis import deblur_video, init_restorer
from mtu_toolkit.deploy import tool_model
from mtu_toolkit.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = dict(type='MTURestorer', backbone=dict(type='MTUNet', num_units=2, channels=8,
                                              num_blocks=1))
H, W, FPS, NUM = 64, 80, 12.0, 10


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'deblur_video_tool', osp.join(ROOT, 'tools', 'deblur_video.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tool = _load_tool()


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A real 10-frame 80x64 mp4 (the astronaut photo panning), a config and a checkpoint."""
    root = tmp_path_factory.mktemp('deblur')
    img = data.astronaut()
    video = str(root / 'in.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), FPS, (W, H))
    for k in range(NUM):
        writer.write(np.ascontiguousarray(img[100 + 2 * k:100 + 2 * k + H,
                                              150 + 3 * k:150 + 3 * k + W, ::-1]))
    writer.release()
    config = root / 'tiny.py'
    config.write_text(f"default_scope = 'mtu'\nmodel = {TINY!r}\n")
    import mtu_toolkit.models  # noqa: F401
    torch.manual_seed(1)
    model = MODELS.build(TINY)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(iter=10)), root / 'tiny.pth')
    other = MODELS.build(dict(TINY, backbone=dict(TINY['backbone'], num_units=1)))
    torch.save(dict(state_dict=other.state_dict(), meta=dict(iter=10)), root / 'other.pth')
    return dict(root=root, video=video, config=str(config), ckpt=str(root / 'tiny.pth'),
                other=str(root / 'other.pth'))


def read_video(path):
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f[..., ::-1])
    cap.release()
    return np.stack(frames), fps


def read_folder(path):
    return np.stack([cv2.imread(osp.join(path, n))[..., ::-1] for n in sorted(os.listdir(path))])


def test_video_in_video_out_keeps_count_size_fps(files, tmp_path):
    out = str(tmp_path / 'out.mp4')
    assert tool.main([files['config'], files['ckpt'], files['video'], out, '--quiet']) == 0
    frames, fps = read_video(out)
    assert frames.shape == (NUM, H, W, 3) and fps == pytest.approx(FPS)
    # the same run through the Python API encodes the very same frames
    api_out = str(tmp_path / 'api.mp4')
    # the tool's default: the direct kernels on the CPU (the same frames as the API's)
    restorer = tool_model(init_restorer(files['config'], files['ckpt']))
    stats = deblur_video(restorer, files['video'], api_out, progress=False)
    assert stats['frames'] == NUM and stats['fps'] == pytest.approx(FPS)
    np.testing.assert_array_equal(read_video(api_out)[0], frames)


def test_folder_output_equals_infer_clip(files, tmp_path):
    out = str(tmp_path / 'frames')
    assert tool.main([files['config'], files['ckpt'], files['video'], out, '--quiet',
                      '--compile']) == 0
    got = read_folder(out)
    blurry, _ = read_video(files['video'])
    restorer = init_restorer(files['config'], files['ckpt'])
    clip = torch.from_numpy(blurry.copy()).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        ref = (restorer.infer_clip(clip) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    # PNG is lossless: the model's frames, up to a float ulp flipping a rounding (the clip path
    # feeds the convs strided windows, the stream stacked ones)
    diff = np.abs(got.astype(int) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


def test_side_by_side_and_folder_input(files, tmp_path):
    src = str(tmp_path / 'src')
    os.makedirs(src)
    blurry, _ = read_video(files['video'])
    for i, f in enumerate(blurry[:5]):
        cv2.imwrite(osp.join(src, f'{i}.png'), f[..., ::-1].copy())
    out = str(tmp_path / 'sbs.avi')
    assert tool.main([files['config'], files['ckpt'], src, out, '--side-by-side', '--fps', '7',
                      '--quiet']) == 0
    frames, fps = read_video(out)
    assert frames.shape == (5, H, 2 * W, 3) and fps == pytest.approx(7)
    # left half is the input, right half the API's result on the same frames (MJPG is lossy:
    # compare loosely, but far closer than input and result are to each other)
    assert np.abs(frames[:, :, :W].astype(int) - blurry[:5]).mean() < 4
    restorer = tool_model(init_restorer(files['config'], files['ckpt']))
    api = str(tmp_path / 'api')
    deblur_video(restorer, src, api, progress=False)
    restored = read_folder(api)
    right = np.abs(frames[:, :, W:].astype(int) - restored).mean()
    assert right < 4 and right < np.abs(restored.astype(int) - blurry[:5]).mean()


@pytest.mark.parametrize('case, code, message', [
    ('missing_input', 3, 'no such file'),
    ('unreadable_input', 3, 'cannot open as a video'),
    ('empty_video', 3, 'empty'),
    ('empty_folder', 3, 'no frames'),
    ('missing_checkpoint', 4, 'does not exist'),
    ('other_architecture', 4, 'another architecture'),
    ('corrupt_checkpoint', 4, 'weights_only=True'),
    ('missing_config', 2, 'does not exist'),
    ('fp16_on_cpu', 2, 'needs a GPU'),
    ('cuda_not_here', 2, 'CUDA is not available here'),
    ('mps_not_here', 2, 'MPS is not available here'),
])
def test_bad_inputs_clear_error_no_output(files, tmp_path, capsys, monkeypatch, case, code,
                                          message):
    args = [files['config'], files['ckpt'], files['video']]
    if case == 'missing_input':
        args[2] = str(tmp_path / 'nope.mp4')
    elif case == 'unreadable_input':
        args[2] = str(tmp_path / 'junk.mp4')
        (tmp_path / 'junk.mp4').write_bytes(np.random.default_rng(0).bytes(4000))
    elif case == 'empty_video':
        args[2] = str(tmp_path / 'empty.mp4')
        (tmp_path / 'empty.mp4').write_bytes(b'')
    elif case == 'empty_folder':
        args[2] = str(tmp_path / 'nothing')
        os.makedirs(args[2])
    elif case == 'missing_checkpoint':
        args[1] = str(tmp_path / 'none.pth')
    elif case == 'other_architecture':
        args[1] = files['other']
    elif case == 'corrupt_checkpoint':
        args[1] = str(tmp_path / 'bad.pth')
        (tmp_path / 'bad.pth').write_bytes(b'not a checkpoint')
    elif case == 'missing_config':
        args[0] = str(tmp_path / 'none.py')
    out = tmp_path / 'out' / 'result.mp4'
    os.makedirs(out.parent)
    extra = {'fp16_on_cpu': ['--fp16', '--device', 'cpu'],
             'cuda_not_here': ['--device', 'cuda'],
             'mps_not_here': ['--device', 'mps']}.get(case, [])
    if case == 'cuda_not_here':
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    if case == 'mps_not_here':
        monkeypatch.setattr(torch.backends.mps, 'is_available', lambda: False)
    assert tool.main(args + [str(out), '--quiet'] + extra) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and message in err[0], err
    assert 'Traceback' not in err[0]
    assert os.listdir(out.parent) == []  # no output and no temporary file
