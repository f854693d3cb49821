import os.path as osp
import sys

import cv2
import numpy as np
import pytest

from mtu_toolkit.datasets import VideoDeblurDataset
from mtu_toolkit.datasets.synthetic import (add_sensor_noise, average_in_linear,
                                            blur_from_frames, bundled_footage, fit_frames,
                                            fold, footage_shots, interpolate_frames,
                                            make_synthetic_dataset, render_camera_shake,
                                            skimage_photos, split_shots)

import prewarmed

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_average_is_in_linear_rgb():
    black, white = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)
    mid = average_in_linear([black, white])
    assert mid[0, 0, 0] == round(255 * 0.5 ** (1 / 2.2))  # 186, not 128


def test_camera_shake_on_a_real_photo_blurs():
    photo = skimage_photos()['astronaut']
    blur, sharp = render_camera_shake(photo, 6, (48, 64), np.random.default_rng(0),
                                      exposures=(9,))
    assert len(blur) == 6 and blur[0].shape == (48, 64, 3)
    lap = [cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for x in blur]
    lap_s = [cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for x in sharp]
    assert np.mean(lap) < 0.8 * np.mean(lap_s)  # averaged frames lose high frequencies


def test_fold_bounces_between_the_walls():
    v = np.array([0., 2., 3., 5., 7., 9., -3., -7.])
    np.testing.assert_allclose(fold(v, 2.), [0., 2., 1., -1., -1., 1., -1., 1.])
    assert np.all(np.abs(fold(np.linspace(-50, 50, 101), 3.)) <= 3.)


def test_steady_pan_blurs_horizontally():
    photo = skimage_photos()['astronaut']
    blur, sharp = render_camera_shake(photo, 4, (48, 64), np.random.default_rng(0),
                                      sub_frames=11, exposures=(7,), pan=1.5, speed=0.,
                                      vertical=0.)
    gray = [cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(float) for b in blur + sharp]
    dx = [np.abs(np.diff(g, axis=1)).mean() for g in gray]
    dy = [np.abs(np.diff(g, axis=0)).mean() for g in gray]
    # a horizontal pan removes horizontal detail far more than vertical detail
    ratio_blur = np.mean(dx[:4]) / np.mean(dy[:4])
    ratio_sharp = np.mean(dx[4:]) / np.mean(dy[4:])
    assert ratio_blur < 0.7 * ratio_sharp
    with pytest.raises(ValueError, match='exposures'):
        render_camera_shake(photo, 2, (48, 64), np.random.default_rng(0), sub_frames=5,
                            exposures=(7,))


def _pan_step(sharp):
    """Horizontal motion between the first two sharp frames, in pixels (phase correlation)."""
    a, b = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in sharp[:2])
    return abs(cv2.phaseCorrelate(a, b)[0][0])


def test_frame_rate_and_pan_speed_drawn_per_sequence():
    photo = skimage_photos()['astronaut']
    steps = []
    for seed in range(6):
        _, sharp = render_camera_shake(photo, 2, (64, 96), np.random.default_rng(seed),
                                       sub_frames=(10, 30), exposures=(5,), pan=1.0, speed=0.,
                                       vertical=0.)
        steps.append(_pan_step(sharp))
    # the same pan filmed at two frame rates: 10 or 30 px between frames (+- the slow rotation)
    near = [min((10, 30), key=lambda r: abs(r - s)) for s in steps]
    assert set(near) == {10, 30} and all(abs(s - r) < 1.5 for s, r in zip(steps, near))
    speeds = [_pan_step(render_camera_shake(photo, 2, (64, 96), np.random.default_rng(seed),
                                            sub_frames=10, exposures=(5,), pan=(0.5, 2.0),
                                            speed=0., vertical=0.)[1]) for seed in range(6)]
    assert all(4.5 < s < 20.5 for s in speeds) and max(speeds) - min(speeds) > 3
    with pytest.raises(ValueError, match='sub_frames'):
        render_camera_shake(photo, 2, (48, 64), np.random.default_rng(0), sub_frames=(5, 11),
                            exposures=(7,))
    with pytest.raises(ValueError, match='pan'):
        render_camera_shake(photo, 2, (48, 64), np.random.default_rng(0), pan=(2.0, 1.0))


def _panning(n=7, step=3):
    """Footage of a camera panning over a real photo by ``step`` pixels per frame."""
    photo = skimage_photos()['coffee']
    return [np.ascontiguousarray(photo[50:98, 40 + step * t:104 + step * t]) for t in range(n)]


def test_blur_from_real_footage_with_upsampling():
    frames = _panning()
    blur, sharp = blur_from_frames(frames, window=3, upsample=2, stride=2)
    # 13 up-sampled frames; windows centred on 2, 4, ..., 10 = the real frames 1..5
    assert len(blur) == 5 and blur[0].shape == (48, 64, 3)
    for k, s in enumerate(sharp, 1):
        np.testing.assert_array_equal(s, frames[k])
    # the interpolated frame between two real frames is close to the real half-way view
    photo = skimage_photos()['coffee']
    a = np.ascontiguousarray(photo[50:98, 40:104])
    b = np.ascontiguousarray(photo[50:98, 44:108])
    mid = interpolate_frames(a, b, 2)[0].astype(float)
    truth = photo[50:98, 42:106].astype(float)
    err_mid = np.abs(mid - truth)[8:-8, 8:-8].mean()
    err_a = np.abs(a.astype(float) - truth)[8:-8, 8:-8].mean()
    assert err_mid < 0.5 * err_a
    # disjoint groups (GoPro): middle frames are sub-frames 1, 4, 7, 10
    blur, sharp = blur_from_frames(frames, window=3, upsample=2)
    assert len(blur) == 3  # centres 3, 6, 9 (12 has no whole window)
    with pytest.raises(ValueError, match='odd'):
        blur_from_frames(frames, window=4)


def test_bundled_real_footage_shots():
    path = bundled_footage()['bikes']
    assert path.endswith('bikes.mp4') and osp.getsize(path) > 100_000
    shots = footage_shots(path, (36, 64), max_frames=80)
    # scene cuts of bikes.mp4 at frames 30 and 76: fast pans are not taken for cuts
    assert [len(s) for s in shots] == [30, 46]
    assert shots[0][0].shape == (36, 64, 3)
    # an artificial cut in the middle of a shot is found
    frames = shots[1][:10] + shots[0][:10]
    assert [len(s) for s in split_shots(frames)] == [10, 10]


def test_fit_frames_and_noise():
    frames = fit_frames([np.zeros((272, 640, 3), np.uint8)], (144, 192))
    assert frames[0].shape == (144, 192, 3)
    noisy = add_sensor_noise([np.full((64, 64, 3), 128, np.uint8)], 0.02,
                             np.random.default_rng(0))[0]
    assert 4 < noisy.astype(float).std() < 6.5  # 0.02 * 255 = 5.1


def test_default_dataset_cli_gives_dvd_layout(tmp_path):
    out = str(tmp_path / 'synthetic')
    photos = skimage_photos()
    make_synthetic_dataset(out, dict(train=[('a', photos['rocket']),
                                            ('f', fit_frames(_panning(9), (32, 48)))],
                                     test=[('b', photos['chelsea'])]), num_frames=5,
                           size=(32, 48), footage=dict(window=3, upsample=2, stride=2))
    assert not osp.exists(out + '.tmp')
    ds = VideoDeblurDataset(out, split='test')
    assert ds[0]['inputs'].shape == (9, 3, 32, 48)
    train = VideoDeblurDataset(out, split='train')
    assert train.seqs == {'a': 5, 'f': 5}
    with pytest.raises(ValueError, match='footage frames are'):
        make_synthetic_dataset(str(tmp_path / 'bad'), dict(train=[('f', _panning(9))]),
                               size=(32, 48))
    assert not osp.exists(str(tmp_path / 'bad.tmp'))
    # the CLI on user sources: a frame folder (footage) and a photograph (camera shake)
    folder = tmp_path / 'frames'
    folder.mkdir()
    for i, f in enumerate(_panning(9)):
        cv2.imwrite(str(folder / f'{i:03d}.png'), f[..., ::-1])
    photo = str(tmp_path / 'photo.png')
    cv2.imwrite(photo, photos['coffee'][..., ::-1])
    proc = prewarmed.run([sys.executable, osp.join(ROOT, 'tools', 'dataset_converters',
                                                   'make_synthetic_blur.py'),
                          str(tmp_path / 'cli'), '--train', str(folder), '--test', photo,
                          '--size', '32', '48', '--frames', '6', '--upsample', '2',
                          '--stride', '2', '--window', '3', '--pan', '0.5', '0.9', '--sub-frames',
                          '11', '22', '--exposures', '9'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert VideoDeblurDataset(str(tmp_path / 'cli'), split='train').seqs == {'frames': 6}
    assert VideoDeblurDataset(str(tmp_path / 'cli'), split='test').seqs == {'photo': 6}
    proc = prewarmed.run([sys.executable, osp.join(ROOT, 'tools', 'dataset_converters',
                                                   'make_synthetic_blur.py'),
                          str(tmp_path / 'mine'), '--train', str(tmp_path / 'nope.mp4')],
                         capture_output=True, text=True)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip() == f'error: source {tmp_path / "nope.mp4"} does not exist'
    proc = prewarmed.run([sys.executable, osp.join(ROOT, 'tools', 'dataset_converters',
                                                   'make_synthetic_blur.py'),
                          str(tmp_path / 'long'), '--test', photo, '--exposures', '13'],
                         capture_output=True, text=True)
    assert proc.returncode != 0 and 'sub_frames=9' in proc.stderr and 'Traceback' not in proc.stderr
    assert not osp.exists(str(tmp_path / 'long'))


def test_sources_that_give_one_sequence_name_are_refused(tmp_path):
    """a/clip and b/clip would both be the sequence 'clip': the second overwrote the first's
    frames in one folder (a spliced sequence). Refused before anything is written."""
    tool = osp.join(ROOT, 'tools', 'dataset_converters', 'make_synthetic_blur.py')
    for name in ('a', 'b'):
        folder = tmp_path / name / 'clip'
        folder.mkdir(parents=True)
        for i, f in enumerate(_panning(9)):
            cv2.imwrite(str(folder / f'{i:03d}.png'), f[..., ::-1])
    proc = prewarmed.run([sys.executable, tool, str(tmp_path / 'syn'), '--train',
                          str(tmp_path / 'a' / 'clip'), str(tmp_path / 'b' / 'clip'),
                          '--size', '32', '48', '--frames', '6', '--upsample', '2',
                          '--stride', '2', '--window', '3'], capture_output=True, text=True)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip() == (f'error: {tmp_path / "b" / "clip"} and {tmp_path / "a" / "clip"}'
                                   " both give the train sequence 'clip'; rename one of them")
    assert not osp.exists(tmp_path / 'syn') and not osp.exists(tmp_path / 'syn.tmp')
    frames = fit_frames(_panning(9), (32, 48))
    with pytest.raises(ValueError, match='train: sequence name.s. clip given to more than one'):
        make_synthetic_dataset(str(tmp_path / 'api'), dict(train=[('clip', frames),
                                                                  ('clip', frames)]),
                               size=(32, 48))
    assert not osp.exists(tmp_path / 'api.tmp')


def test_short_footage_sequences_as_short_as_photo_ones(tmp_path):
    """--frames 3 gives 3-frame sequences from footage as from photographs (it was refused as
    'the footage gives only 3 frames' when the footage had more)."""
    photos = skimage_photos()
    out = str(tmp_path / 'short')
    make_synthetic_dataset(out, dict(train=[('f', fit_frames(_panning(9), (32, 48))),
                                            ('p', photos['coffee'])]), num_frames=3,
                           size=(32, 48), footage=dict(window=3, upsample=2, stride=2))
    assert VideoDeblurDataset(out, split='train').seqs == {'f': 3, 'p': 3}
    with pytest.raises(ValueError, match='at least 1, got 0'):
        make_synthetic_dataset(str(tmp_path / 'none'), dict(train=[('p', photos['coffee'])]),
                               num_frames=0, size=(32, 48))
