import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np

from mtu_toolkit.datasets import VideoDeblurDataset
from mtu_toolkit.datasets.synthetic import (average_in_linear, blur_from_frames,
                                            make_synthetic_dataset, render_camera_shake,
                                            skimage_photos)

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


def test_blur_from_real_footage_with_upsampling(tmp_path):
    photo = skimage_photos()['coffee']
    frames = [np.ascontiguousarray(photo[50:98, 40 + 3 * t:104 + 3 * t]) for t in range(7)]
    blur, sharp = blur_from_frames(frames, window=3, upsample=2)
    assert len(blur) == 13 // 3 and sharp[0].shape == (48, 64, 3)
    # the middle of the first group of up-sampled frames is the first interpolated frame
    assert not np.array_equal(sharp[0], frames[0])


def test_default_dataset_cli_gives_dvd_layout(tmp_path):
    out = str(tmp_path / 'synthetic')
    photos = skimage_photos()
    make_synthetic_dataset(out, dict(train=[('a', photos['rocket'])],
                                     test=[('b', photos['chelsea'])]), num_frames=5,
                           size=(32, 48))
    assert not osp.exists(out + '.tmp')
    ds = VideoDeblurDataset(out, split='test')
    assert ds[0]['inputs'].shape == (9, 3, 32, 48)
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'dataset_converters',
                                                    'make_synthetic_blur.py'),
                           str(tmp_path / 'mine'), '--footage', str(tmp_path / 'nope.mp4')],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and 'nope.mp4' in proc.stderr and 'Traceback' not in proc.stderr
