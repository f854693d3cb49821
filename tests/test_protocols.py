"""The evaluation protocols against independent computations: scikit-image for ``reference``,
OpenCV's PNG writer, brute-force and scipy-filtered MATLAB statistics for ``matlab``, hand-made
shifts for Koehler et al.'s alignment; the metric, the crop transform, the config edit and
tools/test.py --protocol end to end."""
import csv
import json
import math
import os
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from scipy.ndimage import gaussian_filter
from skimage import data as skdata
from skimage.metrics import structural_similarity

from mtu_toolkit.datasets.transforms import ClipCropToMultiple
from mtu_toolkit.evaluation import (VideoRestorationMetric, apply_protocol, get_protocol,
                                    koehler_align, matlab_psnr, matlab_ssim, psnr,
                                    reference_psnr, ssim_uniform, to_uint8)
from mtu_toolkit.evaluation.metrics.koehler import (metrix_psnr, metrix_ssim,
                                                    register_translation, shift_with_zeros,
                                                    signed_peak)
from mtu_toolkit.evaluation.metrics.matlab_metrics import (channel_mixing_matrix,
                                                           matlab_gaussian1d)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs'))
from tiny_data import ROOT, make_dvd_tree, tool_env, write_config  # noqa: E402
import prewarmed  # noqa: E402


def _photo(name, box=(slice(100, 196), slice(120, 248))):
    """A crop of one of scikit-image's real photographs, float64 (H, W, 3) in [0, 1]."""
    return getattr(skdata, name)()[box].astype(np.float64) / 255


def _degrade(img, kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == 'noise':
        return np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1)
    if kind == 'blur':
        return cv2.GaussianBlur(img, (0, 0), 1.2)
    # 8-bit JPEG round trip: real compression artefacts
    ok, buf = cv2.imencode('.jpg', (img * 255).round().astype(np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, 40])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).astype(np.float64) / 255


def _chw(img):
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


# ------------------------------------------------------------------ reference (eval.py)
@pytest.mark.parametrize('name,kind', [('astronaut', 'noise'), ('chelsea', 'blur'),
                                       ('coffee', 'jpeg')])
def test_ssim_uniform_equals_skimage_default_on_photos(name, kind):
    gt = _photo(name)
    out = _degrade(gt, kind)
    ref = structural_similarity(out, gt, channel_axis=-1, data_range=1)  # all defaults
    assert abs(ssim_uniform(_chw(out), _chw(gt)) - ref) < 1e-10
    assert abs(ssim_uniform(out, gt) - ref) < 1e-10  # (H, W, 3) numpy input
    # float32 inputs (what eval.py hands over; scikit-image >= 0.19 then computes in float32,
    # 0.18, the reference's version, in float64): the difference is rounding only
    ref32 = structural_similarity(out.astype(np.float32), gt.astype(np.float32),
                                  channel_axis=-1, data_range=1)
    assert abs(ssim_uniform(_chw(out).float(), _chw(gt).float()) - ref32) < 1e-5
    # the population-covariance variant too
    ref_pop = structural_similarity(out, gt, channel_axis=-1, data_range=1,
                                    use_sample_covariance=False)
    assert abs(ssim_uniform(out, gt, sample_covariance=False) - ref_pop) < 1e-10
    assert abs(ssim_uniform(out, gt) - ref_pop) > 1e-5  # the default is not that variant


def test_ssim_uniform_batches_and_errors():
    a, b = _photo('astronaut'), _degrade(_photo('astronaut'), 'noise')
    batch = ssim_uniform(torch.stack([_chw(a), _chw(b)]), torch.stack([_chw(b), _chw(b)]))
    assert batch[0].item() == pytest.approx(ssim_uniform(a, b), abs=1e-12)
    assert batch[1].item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match='window'):
        ssim_uniform(torch.rand(3, 6, 9), torch.rand(3, 6, 9))
    with pytest.raises(ValueError, match='odd'):
        ssim_uniform(a, b, win_size=8)


def test_reference_psnr_is_eval_py_float32_mse():
    gt = _chw(_photo('coffee')).float()
    out = _chw(_degrade(_photo('coffee'), 'noise')).float()
    # eval.py's arrays are (H, W, 3) views of (3, H, W) float32 frames
    a, b = out.numpy().transpose(1, 2, 0), gt.numpy().transpose(1, 2, 0)
    mse32 = np.mean((a - b) ** 2)
    assert mse32.dtype == np.float32
    assert reference_psnr(out, gt) == 10 * math.log10(1.0 / float(mse32))  # bit for bit
    # and the float32 MSE is negligibly far from the float64 one
    assert abs(reference_psnr(out, gt) - psnr(out, gt)) < 1e-4
    assert reference_psnr(gt, gt) == math.inf


# ------------------------------------------------------------------ matlab (evaluation.m)
def test_to_uint8_is_what_opencv_writes_to_png():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.2, 1.2, (3, 8, 9)).astype(np.float32)
    # exact halves: x * 255 == k + 0.5 in float32, where round-half-to-even matters
    x[0, 0, :6] = np.array([0.5, 1.5, 2.5, 3.5, 253.5, 254.5], np.float32) / np.float32(255)
    clamped = np.clip(x, 0, 1) * np.float32(255)  # eval.py: clamped result * 255, float32
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(clamped.transpose(1, 2, 0)))
    assert ok
    written = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).transpose(2, 0, 1)
    ours = to_uint8(torch.from_numpy(x))
    assert ours.dtype == torch.uint8
    np.testing.assert_array_equal(ours.numpy(), written)
    gt8 = torch.from_numpy(rng.integers(0, 256, (3, 5, 5), dtype=np.uint8))
    assert torch.equal(to_uint8(gt8.float() / 255), gt8)  # 8-bit ground truth round-trips


def test_matlab_psnr_by_hand():
    a = torch.tensor([[[10, 20], [30, 40]]], dtype=torch.uint8).repeat(3, 1, 1)
    b = a.clone()
    b[0, 0, 0] = 13   # error 3
    b[2, 1, 1] = 36   # error -4
    mse = (9 + 16) / 12
    assert matlab_psnr(a, b).item() == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=1e-12)
    assert matlab_psnr(a, a).item() == math.inf


def _ssim_from_stats(ux, uy, sxx, syy, sxy, L=255.0):
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    vx, vy, vxy = sxx - ux * ux, syy - uy * uy, sxy - ux * uy
    return (((2 * ux * uy + c1) * (2 * vxy + c2))
            / ((ux * ux + uy * uy + c1) * (vx + vy + c2))).mean()


def _brute_force_matlab_ssim(a, b, sigma=1.5):
    """(H, W, 3) arrays: explicit 11x11x11 Gaussian on replicate-padded volumes, every voxel."""
    r = 5
    g = np.arange(-r, r + 1, dtype=np.float64)
    x, y, z = np.meshgrid(g, g, g, indexing='ij')
    k = np.exp(-(x * x + y * y + z * z) / (2 * sigma * sigma))
    k /= k.sum()

    def filt(v):
        p = np.pad(v, r, mode='edge')
        win = np.lib.stride_tricks.sliding_window_view(p, k.shape)
        return np.einsum('ijkabc,abc->ijk', win, k)

    a, b = a.astype(np.float64), b.astype(np.float64)
    return _ssim_from_stats(filt(a), filt(b), filt(a * a), filt(b * b), filt(a * b))


@pytest.mark.parametrize('shape', [(4, 5, 3), (9, 7, 3), (12, 13, 3)])
def test_matlab_ssim_by_brute_force(shape):
    rng = np.random.default_rng(shape[0])
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, shape), 0, 255).astype(np.uint8)
    ref = _brute_force_matlab_ssim(a, b)
    ours = matlab_ssim(torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1))
    assert ours.shape == (1,) and abs(ours.item() - ref) < 1e-12


def test_matlab_ssim_on_a_photo_against_scipy():
    """scipy's Gaussian with mode 'nearest' (= replicate) over the H x W x 3 volume."""
    gt = (_photo('chelsea') * 255).round()
    out = (_degrade(_photo('chelsea'), 'blur') * 255).round()

    def filt(v):  # radius int(truncate * sigma + 0.5) = 5, as MATLAB's ceil(3 * 1.5)
        return gaussian_filter(v, 1.5, mode='nearest', truncate=5 / 1.5)

    ref = _ssim_from_stats(filt(gt), filt(out), filt(gt * gt), filt(out * out), filt(gt * out))
    ours = matlab_ssim(_chw(gt).to(torch.uint8), _chw(out).to(torch.uint8)).item()
    assert abs(ours - ref) < 1e-10
    # float32 arithmetic changes it by rounding only
    assert abs(matlab_ssim(_chw(gt), _chw(out), dtype=torch.float32).item() - ref) < 1e-6
    # a volume, not three channels: differs from the per-channel 2-D SSIM
    per_channel = np.mean([_ssim_from_stats(*[gaussian_filter(v, 1.5, mode='nearest',
                                                              truncate=5 / 1.5)
                                              for v in (g, o, g * g, o * o, g * o)])
                           for g, o in zip(gt.transpose(2, 0, 1), out.transpose(2, 0, 1))])
    assert abs(ours - per_channel) > 1e-4


def test_channel_mixing_of_the_replicate_padded_gaussian():
    k = matlab_gaussian1d(1.5)
    assert k.numel() == 11 and k.sum().item() == pytest.approx(1, abs=1e-15)
    m = channel_mixing_matrix(3, k)
    # offsets -5..5 around channel c land on clamp(c + offset, 0, 2)
    expect = torch.stack([
        torch.stack([k[:6].sum(), k[6], k[7:].sum()]),
        torch.stack([k[:5].sum(), k[5], k[6:].sum()]),
        torch.stack([k[:4].sum(), k[4], k[5:].sum()])])
    assert torch.allclose(m, expect, atol=1e-15)
    assert torch.allclose(channel_mixing_matrix(1, k), torch.ones(1, 1, dtype=k.dtype))


# ------------------------------------------------------------------ Koehler et al. alignment
def test_signed_peak_follows_dftregistration():
    # MATLAB: rloc (1-based) > fix(m / 2) -> rloc - m - 1, else rloc - 1
    for m in (4, 5, 8, 9):
        for p in range(m):
            rloc = p + 1
            expect = rloc - m - 1 if rloc > m // 2 else rloc - 1
            assert signed_peak(p, m) == expect


def test_koehler_aligns_a_shifted_scaled_result_exactly():
    # a photo patch on a black background (8-bit scale), so that the shifted result loses no
    # content and the cross-correlation peak is exact
    x = np.zeros((56, 64, 3))
    x[8:48, 8:56] = skdata.astronaut()[100:140, 120:168]
    # the result is the ground truth moved down 3 rows and left 2 columns, darkened by 0.8:
    # z[i, j] = 0.8 x[i - 3, j + 2]
    z = np.zeros_like(x)
    z[3:, :-2] = 0.8 * x[:-3, 2:]
    zr, xr, shift = koehler_align(_chw(z), _chw(x))
    assert shift == (-3, 2)  # the move that brings the result back onto the ground truth
    scale = (x * z).sum() / (z * z).sum()    # computed on the unaligned frames, as Koehler
    zr, xr = zr.numpy().transpose(1, 2, 0), xr.numpy().transpose(1, 2, 0)
    overlap = np.zeros(x.shape[:2], bool)
    overlap[:-3, 2:] = True                  # zr[i, j] = zs[i + 3, j - 2] exists there
    np.testing.assert_allclose(zr[overlap], scale * 0.8 * x[overlap], rtol=1e-12)
    np.testing.assert_array_equal(xr[overlap], x[overlap])
    assert not zr[~overlap].any() and not xr[~overlap].any()


def test_koehler_registers_a_real_frame_crop():
    """Content moves in at the border (no black margin): the peak still lands on the shift."""
    photo = skdata.astronaut().astype(np.float64)
    x = photo[100:400, 100:420]
    z = 0.8 * photo[97:397, 102:422]         # again x moved down 3 rows, left 2 columns
    assert register_translation(_chw(x), _chw(z)) == (-3, 2)


@pytest.mark.parametrize('dy,dx', [(0, 0), (5, 7), (-4, 6), (2, -9), (-6, -1)])
def test_register_translation_signs(dy, dx):
    rng = np.random.default_rng(abs(dy * 31 + dx))
    x = torch.zeros(3, 40, 48, dtype=torch.float64)  # content inside a 10-pixel black margin
    x[:, 10:30, 10:38] = torch.from_numpy(rng.random((3, 20, 28)))
    z = shift_with_zeros(x, -dy, -dx)  # x moved by (-dy, -dx): registering it needs (dy, dx)
    assert torch.equal(z, torch.roll(x, (-dy, -dx), (1, 2)))
    assert register_translation(x, z) == (dy, dx)
    # equal frames up to scale: the alignment restores them exactly on the overlap
    zr, xr, shift = koehler_align(0.5 * x, x)
    assert shift == (0, 0) and torch.allclose(zr, x, atol=1e-12) and torch.equal(xr, x)


def test_koehler_all_zero_result_stays_finite():
    zr, xr, shift = koehler_align(torch.zeros(3, 16, 16), torch.rand(3, 16, 16))
    assert shift == (0, 0) and not zr.any() and torch.isfinite(xr).all()


def test_metrix_scores_are_wangs_ssim_and_psnr_of_the_luma():
    """Koehler et al.'s code scores an aligned pair with MeTriX MuX: PSNR and Wang's SSIM
    (11x11 Gaussian, sigma 1.5, 'valid') of Y = 0.299 R + 0.587 G + 0.114 B, unrounded."""
    photo = skdata.astronaut()[100:164, 120:200].astype(np.float64)
    x = _chw(photo)
    z = _chw(np.clip(0.9 * photo + 6 * np.sin(np.arange(80) / 3.0)[None, :, None], 0, 300))
    yx = (0.299 * photo[..., 0] + 0.587 * photo[..., 1] + 0.114 * photo[..., 2])
    yz = z.numpy()
    yz = 0.299 * yz[0] + 0.587 * yz[1] + 0.114 * yz[2]
    assert metrix_psnr(x, z) == pytest.approx(
        10 * np.log10(255 ** 2 / np.mean((yx - yz) ** 2)), rel=1e-12)
    # scikit-image filters the whole frame and averages inside a 5-pixel border: the 'valid'
    # windows of an 11x11 Gaussian (truncate 3.5 at sigma 1.5 gives 11 taps)
    expect = structural_similarity(yx, yz, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=255)
    assert metrix_ssim(x, z) == pytest.approx(expect, abs=1e-12)
    # not the 3-D SSIM MATLAB's ssim gives the unaligned protocol
    assert abs(metrix_ssim(x, z) - matlab_ssim(x, z).item()) > 1e-3
    with pytest.raises(ValueError, match='smaller than the 11x11 window'):
        metrix_ssim(x[:, :10], z[:, :10])


def test_matlab_protocol_scores_aligned_pairs_with_metrix_mux():
    photo = skdata.astronaut()[100:164, 120:200]
    gt = torch.from_numpy(photo).permute(2, 0, 1).float()[None] / 255
    pred = torch.roll(gt, (1, -2), (2, 3)) * 0.9
    res = get_protocol('matlab').score(pred, gt, align=True)
    zr, xr, shift = koehler_align(to_uint8(pred[0]), to_uint8(gt[0]))
    assert res['shift'] == [list(shift)]
    assert res['psnr'] == [metrix_psnr(xr, zr)] and res['ssim'] == [metrix_ssim(xr, zr)]


# ------------------------------------------------------------------ protocols and the metric
def _clip(rng, t=3, h=24, w=28):
    gt = torch.from_numpy(rng.integers(0, 256, (t, 3, h, w), dtype=np.uint8)).float() / 255
    pred = (gt + 0.05 * torch.from_numpy(rng.standard_normal((t, 3, h, w))).float())
    return pred, gt


def test_protocol_scores_match_their_definitions():
    pred, gt = _clip(np.random.default_rng(0))
    ref = get_protocol('reference').score(pred, gt)
    mat = get_protocol('matlab').score(pred, gt)
    for i in range(3):
        p = pred[i].clamp(0, 1)
        assert ref['psnr'][i] == reference_psnr(p, gt[i])
        sk = structural_similarity(p.permute(1, 2, 0).numpy(), gt[i].permute(1, 2, 0).numpy(),
                                   channel_axis=-1, data_range=1)
        assert abs(ref['ssim'][i] - sk) < 1e-5
        p8, g8 = to_uint8(pred[i]).numpy().astype(np.float64), (gt[i] * 255).round().numpy()
        assert mat['psnr'][i] == pytest.approx(
            10 * math.log10(255 ** 2 / np.mean((p8 - g8) ** 2)), abs=1e-10)
        assert mat['ssim'][i] == pytest.approx(
            _brute_force_matlab_ssim(g8.transpose(1, 2, 0), p8.transpose(1, 2, 0)), abs=1e-10)


def test_metric_matlab_skips_first_frames_and_reports_its_protocol():
    rng = np.random.default_rng(1)
    metric = VideoRestorationMetric(protocol='matlab')
    clips = {'a': _clip(rng, t=3), 'b': _clip(rng, t=2)}
    # 'a' comes in two chunks (as a split sequence would): only its frame 0 is skipped
    metric.process({}, [dict(pred=clips['a'][0][:2], gt=clips['a'][1][:2], key='a',
                             frame_indices=[0, 1])])
    metric.process({}, [dict(pred=clips['a'][0][2:], gt=clips['a'][1][2:], key='a',
                             frame_indices=[2])])
    metric.process({}, [dict(pred=clips['b'][0], gt=clips['b'][1], key='b',
                             frame_indices=[0, 1])])
    metric.process({}, [dict(pred=clips['b'][0][:1], gt=clips['b'][1][:1], key='c',
                             frame_indices=[0])])  # a one-frame sequence scores nothing
    out = metric.evaluate(size=4)
    assert [(r['sequence'], r['frame']) for r in metric.frame_table] == [
        ('a', 1), ('a', 2), ('b', 1)]
    expect = [matlab_psnr(to_uint8(clips[k][1][f]), to_uint8(clips[k][0][f])).item()
              for k, f in (('a', 1), ('a', 2), ('b', 1))]
    assert out['PSNR'] == pytest.approx(np.mean(expect), abs=1e-10)
    assert metric.overall['frames'] == 3
    info = metric.protocol_info
    assert info['protocol'] == 'matlab' and info['align'] is False
    assert 'frames 2..N' in info['description']


@pytest.mark.parametrize('protocol, align, size, least', [
    ('toolkit', False, (10, 40), 11), ('reference', False, (6, 40), 7),
    ('reference', True, (40, 6), 7), ('matlab', True, (10, 40), 11)])
def test_frames_smaller_than_the_ssim_window_are_named(protocol, align, size, least):
    from mtu_toolkit.datasets.errors import DatasetError
    from mtu_toolkit.engine.config_loader import user_error
    frames = torch.rand(2, 3, *size)
    metric = VideoRestorationMetric(protocol=protocol, align=align)
    if protocol != 'toolkit':  # (these protocols crop to a multiple of 4 before inference)
        frames = frames[..., :size[0] // 4 * 4 or 4, :size[1] // 4 * 4 or 4]
    h, w = frames.shape[-2:]
    with pytest.raises(DatasetError) as err:
        metric.process({}, [dict(pred=frames, gt=frames, key='clip', frame_indices=[0, 1])])
    assert str(err.value) == (
        f"sequence 'clip': frames of {h}x{w} px (height x width) are smaller than the "
        f"{least}x{least} SSIM window of protocol {protocol!r}{' with --align' * align}")
    assert user_error(err.value)[1] == 1
    # matlab without alignment pads its window: any size scores
    small, frames = VideoRestorationMetric(protocol='matlab'), frames[..., :4, :4]
    small.process({}, [dict(pred=frames, gt=frames, key='clip', frame_indices=[0, 1])])
    assert len(small.results[0]['psnr']) == 1


def test_matlab_on_one_frame_sequences_says_why_nothing_was_scored():
    from mtu_toolkit.datasets.errors import DatasetError
    metric = VideoRestorationMetric(protocol='matlab')
    frames = torch.rand(1, 3, 16, 16)
    for key in ('a', 'b'):
        metric.process({}, [dict(pred=frames, gt=frames, key=key, frame_indices=[0])])
    with pytest.raises(DatasetError, match="no frame was scored: protocol 'matlab' skips the "
                                           'first frame of every sequence, and every sequence '
                                           'has one frame only'):
        metric.compute_metrics(metric.results)


def test_metric_align_records_the_shift():
    rng = np.random.default_rng(2)
    big = torch.from_numpy(cv2.GaussianBlur(rng.random((40, 44, 3)), (0, 0), 1.0)).permute(
        2, 0, 1).float()
    gt = big[:, 4:36, 4:40].unsqueeze(0)
    pred = big[:, 6:38, 3:39].unsqueeze(0)  # gt moved up 2 rows, right 1 column
    metric = VideoRestorationMetric(protocol='reference', align=True)
    metric.process({}, [dict(pred=pred, gt=gt, key='s', frame_indices=[0])])
    metric.evaluate(size=1)
    row = metric.frame_table[0]
    assert row['shift'] == [2, -1]
    plain = VideoRestorationMetric(protocol='reference')
    plain.process({}, [dict(pred=pred, gt=gt, key='s', frame_indices=[0])])
    plain.evaluate(size=1)
    assert row['PSNR'] > plain.frame_table[0]['PSNR'] + 10  # aligned: nearly identical
    assert 'shift' not in plain.frame_table[0]
    assert 'Koehler' in metric.protocol_info['description']


def test_metric_refuses_uncropped_frames_for_reference():
    metric = VideoRestorationMetric(protocol='reference')
    with pytest.raises(ValueError, match='ClipCropToMultiple'):
        metric.process({}, [dict(pred=torch.rand(1, 3, 30, 32), gt=torch.rand(1, 3, 30, 32),
                                 key='x', frame_indices=[0])])
    with pytest.raises(ValueError, match='unknown evaluation protocol'):
        VideoRestorationMetric(protocol='paper')


# ------------------------------------------------------------------ crop transform and config
def test_clip_crop_to_multiple():
    rng = np.random.default_rng(3)
    results = dict(inputs=rng.integers(0, 256, (7, 30, 35, 3), dtype=np.uint8),
                   gt=rng.integers(0, 256, (3, 30, 35, 3), dtype=np.uint8),
                   flow=rng.standard_normal((3, 30, 35, 2)).astype(np.float32), key='v')
    before = {k: v.copy() for k, v in results.items() if k != 'key'}
    out = ClipCropToMultiple(multiple=4)(results)
    for k, v in before.items():
        assert out[k].shape[1:3] == (28, 32)
        np.testing.assert_array_equal(out[k], v[:, :28, :32])  # top-left, flow vectors kept
    same = dict(inputs=np.zeros((5, 8, 12, 3), np.uint8), gt=np.zeros((1, 8, 12, 3), np.uint8))
    assert ClipCropToMultiple(4)(same)['gt'].shape == (1, 8, 12, 3)
    with pytest.raises(ValueError, match='smaller than 4'):
        ClipCropToMultiple(4)(dict(inputs=np.zeros((5, 3, 9, 3)), gt=np.zeros((1, 3, 9, 3))))


def test_apply_protocol_edits_metric_and_test_pipeline():
    cfg = Config(dict(
        test_evaluator=dict(type='VideoRestorationMetric'),
        test_dataloader=dict(dataset=dict(type='VideoDeblurDataset', data_root='x',
                                          pipeline=[dict(type='ClipRandomFlip', prob=0)]))))
    apply_protocol(cfg, 'reference', True)
    apply_protocol(cfg, 'reference')  # twice: one crop
    assert cfg.test_evaluator.protocol == 'reference' and cfg.test_evaluator.align is True
    assert [t['type'] for t in cfg.test_dataloader.dataset.pipeline] == [
        'ClipCropToMultiple', 'ClipRandomFlip']
    toolkit = Config(dict(test_evaluator=[dict(type='mtu.VideoRestorationMetric')],
                          test_dataloader=dict(dataset=dict(type='VideoDeblurDataset'))))
    apply_protocol(toolkit, 'toolkit')
    assert 'pipeline' not in toolkit.test_dataloader.dataset
    with pytest.raises(ValueError, match='no VideoRestorationMetric'):
        apply_protocol(Config(dict(test_evaluator=dict(type='Other'))), 'matlab')


def test_the_validation_gets_its_protocols_crop():
    """train.py's validation with the config's matlab protocol (frames not a multiple of 4
    failed at the first validation, hours in)."""
    cfg = Config(dict(
        val_evaluator=dict(type='VideoRestorationMetric', protocol='matlab', align=True),
        val_dataloader=dict(dataset=dict(type='VideoDeblurDataset', data_root='x')),
        test_dataloader=dict(dataset=dict(type='VideoDeblurDataset', data_root='x'))))
    apply_protocol(cfg, stage='val')
    assert cfg.val_dataloader.dataset.pipeline == [dict(type='ClipCropToMultiple', multiple=4)]
    assert 'pipeline' not in cfg.test_dataloader.dataset
    metric = VideoRestorationMetric(protocol='matlab')
    with pytest.raises(ValueError, match="add dict.type='ClipCropToMultiple', multiple=4. to the "
                                         "dataset's pipeline"):
        metric.process({}, [dict(pred=torch.rand(1, 3, 18, 20), gt=torch.rand(1, 3, 18, 20),
                                 key='s', frame_indices=[1])])


def test_the_crop_goes_into_the_datasets_a_wrapper_holds():
    """A ConcatDataset / RepeatDataset has no pipeline: its datasets get the crop (training
    refused a wrapped validation set under the matlab protocol)."""
    leaf = dict(type='VideoDeblurDataset', data_root='x')
    cfg = Config(dict(
        val_evaluator=dict(type='VideoRestorationMetric', protocol='matlab'),
        val_dataloader=dict(dataset=dict(type='ConcatDataset', datasets=[
            leaf, dict(type='RepeatDataset', times=2, dataset=leaf)]))))
    apply_protocol(cfg, stage='val')
    inner = cfg.val_dataloader.dataset.datasets
    crop = [dict(type='ClipCropToMultiple', multiple=4)]
    assert inner[0].pipeline == crop and inner[1].dataset.pipeline == crop
    assert 'pipeline' not in cfg.val_dataloader.dataset and 'pipeline' not in inner[1]
    with pytest.raises(ValueError, match='the val dataset ConcatDataset takes no `pipeline`'):
        apply_protocol(Config(dict(
            val_evaluator=dict(type='VideoRestorationMetric', protocol='matlab'),
            val_dataloader=dict(dataset=dict(type='ConcatDataset', datasets=[])))), stage='val')


# ------------------------------------------------------------------ tools/test.py --protocol
@pytest.mark.slow
def test_tools_test_protocols_end_to_end(tmp_path):
    from mtu_toolkit.registry import MODELS
    data = make_dvd_tree(str(tmp_path / 'data'), videos=1, frames=4, size=(30, 34))
    loader = dict(num_workers=0, batch_size=1, collate_fn=dict(type='default_collate'),
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  dataset=dict(type='VideoDeblurDataset', data_root=data, layout='dvd',
                               split='test', backend='disk'))
    cfg = write_config(str(tmp_path / 'tiny.py'), data, test_dataloader=loader)
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='MTURestorer', motion_loss=None,
        backbone=dict(type='MTUNet', num_units=1, channels=8, num_blocks=1,
                      mc_head=dict(type='CorrelationMCHead', max_displacement=3)))).eval()
    ckpt = tmp_path / 'model.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)

    def run(*extra):
        work = tmp_path / ('work' + '_'.join(extra))
        proc = prewarmed.run([sys.executable, os.path.join(ROOT, 'tools', 'test.py'), cfg,
                              str(ckpt), '--work-dir', str(work), *extra], cwd=tmp_path,
                             env=tool_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        report = json.loads((work / 'test_results.json').read_text())
        rows = list(csv.DictReader((work / 'test_results.csv').read_text().splitlines()))
        return proc.stdout, report, rows

    log, report, rows = run('--protocol', 'reference')
    assert 'protocol: reference (' in log
    assert report['protocol']['protocol'] == 'reference' and not report['protocol']['align']
    assert [r['protocol'] for r in rows] == ['reference', 'reference']
    assert rows[-1]['sequence'] == 'overall' and rows[-1]['align'] == 'False'
    # independent: the model on the frames cropped to 28x32 before inference, scikit-image
    blur = np.stack([cv2.imread(os.path.join(data, 'test', 'video0', 'input', f'{i:05d}.png'))
                     for i in range(4)])[:, :28, :32, ::-1]
    gt = np.stack([cv2.imread(os.path.join(data, 'test', 'video0', 'GT', f'{i:05d}.png'))
                   for i in range(4)])[:, :28, :32, ::-1]
    frames = torch.from_numpy(blur.copy()).permute(0, 3, 1, 2).float() / 255
    pred = model.infer_clip(frames).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    gt = gt.astype(np.float32) / 255
    for r, p, g in zip(report['frames'], pred, gt):
        assert r['PSNR'] == pytest.approx(10 * math.log10(1 / np.mean((p - g) ** 2)), abs=1e-3)
        assert r['SSIM'] == pytest.approx(
            structural_similarity(p, g, channel_axis=-1, data_range=1), abs=1e-4)

    log, report, rows = run('--protocol', 'matlab', '--align')
    assert 'protocol: matlab + align (' in log and 'Koehler' in log
    assert report['protocol'] == dict(report['protocol'], protocol='matlab', align=True)
    assert [r['frame'] for r in report['frames']] == [1, 2, 3]  # the first frame is skipped
    assert all(len(r['shift']) == 2 for r in report['frames'])
    assert rows[-1]['frames'] == '3' and rows[-1]['align'] == 'True'
