import cv2
import numpy as np
import pytest

from mtu_toolkit.datasets.flow import sharp_flow
from mtu_toolkit.datasets.transforms import (ClipGaussianNoise, ClipRandomCrop, ClipRandomFlip,
                                             ClipRandomRot90)


def _shifted_clip(dx=3, dy=-2, n=3, h=24, w=32):
    """Sharp frames translating so that gt_t(x) = gt_{t-1}(x + (dx, dy)); flow = (dx, dy)."""
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (h + 40, w + 40, 3), dtype=np.uint8)
    frames = [big[20 + t * dy:20 + t * dy + h, 20 + t * dx:20 + t * dx + w] for t in range(n)]
    gt = np.stack(frames)
    flow = np.zeros((n, h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return dict(inputs=np.concatenate([gt[:1]] * 2 + [gt] + [gt[-1:]] * 2), gt=gt, flow=flow)


def _check_flow(r):
    """gt_1(x) == gt_0(x + flow) on the interior, for the (constant) flow of the clip."""
    dx, dy = r['flow'][1, 0, 0].round().astype(int)
    g0, g1 = r['gt'][0].astype(int), r['gt'][1].astype(int)
    h, w = g1.shape[:2]
    m = 6
    ys, xs = np.mgrid[m:h - m, m:w - m]
    np.testing.assert_array_equal(g1[ys, xs], g0[ys + dy, xs + dx])


@pytest.mark.parametrize('seed', range(8))
def test_geometric_transforms_keep_flow_consistent(seed):
    np.random.seed(seed)
    r = _shifted_clip()
    for t in (ClipRandomFlip(0.5), ClipRandomRot90(1.0), ClipRandomCrop((20, 20))):
        r = t(r)
    _check_flow(r)
    # blur and sharp move together: the context frames equal the gt frames they were copied from
    np.testing.assert_array_equal(r['inputs'][2:-2], r['gt'])


def test_crop_is_identical_across_frames_and_checks_size():
    np.random.seed(0)
    r = ClipRandomCrop(8)(_shifted_clip())
    assert r['inputs'].shape == (7, 8, 8, 3) and r['flow'].shape == (3, 8, 8, 2)
    with pytest.raises(ValueError, match='larger than frames'):
        ClipRandomCrop(100)(_shifted_clip())


def test_noise_only_on_blurry_frames():
    np.random.seed(0)
    r = _shifted_clip()
    gt = r['gt'].copy()
    r = ClipGaussianNoise(sigma=0.01)(r)
    assert r['inputs'].dtype == np.float32
    assert 0.005 < np.std(r['inputs'][2:-2] - gt / 255.) < 0.02
    np.testing.assert_array_equal(r['gt'], gt)


def test_fixture_flow_holds_before_any_transform():
    _check_flow(_shifted_clip())


@pytest.mark.parametrize('k', [1, 2, 3])
def test_rotated_flow_matches_flow_recomputed_on_rotated_frames(k):
    """Independent check of the vector rotation: DIS on the rotated pair gives the same flow."""
    r = _shifted_clip(dx=2, dy=-1, n=2, h=64, w=64)
    rng = np.random.default_rng(1)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (104, 104, 3), dtype=np.uint8), (0, 0), 2)
    r['gt'] = np.stack([smooth[20:84, 20:84], smooth[19:83, 22:86]])  # gt_1(x) = gt_0(x+(2,-1))
    r['inputs'] = np.concatenate([r['gt'][:1]] * 2 + [r['gt']] + [r['gt'][-1:]] * 2)
    for seed in range(100):  # a seed for which the transform turns by k quarter turns
        np.random.seed(seed)
        out = ClipRandomRot90(1.0)(dict(r))
        if np.array_equal(out['gt'], np.rot90(r['gt'], k, axes=(1, 2))):
            break
    recomputed = sharp_flow(out['gt'][1], out['gt'][0])[16:-16, 16:-16]
    np.testing.assert_allclose(np.median(recomputed.reshape(-1, 2), 0),
                               out['flow'][1, 32, 32], atol=0.25)
    assert np.abs(out['flow'][1, 32, 32]).sum() == 3
