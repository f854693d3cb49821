"""The motion compensation's alignment accuracy (paper Sec. 4.2): hand-made motion, the
reference's masked PSNR / SSIM, and the heads it applies to."""
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

import mtu_toolkit.models  # noqa: F401
from mtu_toolkit.evaluation import MCAlignmentMetric, alignment_scores
from mtu_toolkit.evaluation.metrics.alignment_metric import ssim_map
from mtu_toolkit.registry import MODELS


def textured(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h + 8, w + 8, generator=g)
    return torch.nn.functional.avg_pool2d(x, 3, 1)[0, :, :h, :w]


def test_true_motion_aligns_perfectly_and_none_does_not():
    big = textured(40, 64)
    # the camera pans: frame t shows the scene 8 px further right, frame_t(x) = frame_{t-1}(x+8)
    gt = torch.stack([big[:, :, 8 * t:8 * t + 40] for t in range(3)])
    exact = torch.zeros(3, 2, 10, 10)
    exact[:, 0] = 8.0  # dx = +8 px on the 1/4 grid
    scores = alignment_scores(gt, exact, 4)
    assert list(scores) == [1, 2]  # frame 0 has no previous frame
    assert all(p > 100 for p, _ in scores.values())  # exact up to rounding
    none = alignment_scores(gt, torch.zeros(3, 2, 10, 10), 4)
    assert all(p < 30 for p, _ in none.values())
    # SSIM's windows see the zeros outside the warped frame (the reference's masked SSIM), so
    # even an exact warp scores below 1 next to the frame's edge; still far above no alignment
    assert all(s > n + 0.2 for (_, s), (_, n) in zip(scores.values(), none.values()))


def test_masked_psnr_against_a_hand_computation():
    gt = torch.zeros(2, 3, 8, 8)
    gt[0] = 0.5
    gt[1] = 0.25
    flow = torch.zeros(2, 2, 8, 8)
    flow[1, 0] = 4.0  # shift by 4: the right half of the warp falls outside (masked out)
    (psnr, _), = alignment_scores(gt, flow, 1).values()
    # at 1/4 resolution (2x2): the left column is all GT_{t-1} (0.5), the right column masked
    assert psnr == pytest.approx(10 * math.log10(1 / 0.25 ** 2))


def test_ssim_map_is_scikit_images_full_map():
    a, b = textured(20, 24, 1)[None], textured(20, 24, 2)[None]
    _, full = structural_similarity(a[0].permute(1, 2, 0).numpy().astype(np.float64),
                                    b[0].permute(1, 2, 0).numpy().astype(np.float64),
                                    data_range=1, channel_axis=-1, full=True)
    np.testing.assert_allclose(ssim_map(a, b)[0].permute(1, 2, 0).numpy(), full, atol=1e-10)


@pytest.mark.parametrize('head, applicable', [('correlation', True), ('flow', True),
                                              ('none', True), ('fan', False)])
def test_the_metric_reads_the_restorers_predictions(head, applicable):
    torch.manual_seed(0)
    model = MODELS.build(dict(type='MTURestorer', backbone=dict(
        type='MTUNet', num_units=2, channels=4, num_blocks=0,
        mc_head=dict(type=head, **({'max_displacement': 2} if head == 'correlation' else {}))
    ))).eval()
    frames = torch.rand(1, 4 + 4, 3, 16, 24)
    samples = dict(gt=torch.rand(1, 4, 3, 16, 24), key=['seq'],
                   frame_indices=[torch.tensor([i]) for i in range(4)])
    with torch.no_grad():
        results = model(frames, samples, mode='predict')
    metric = MCAlignmentMetric()
    metric.process({}, results)
    values = metric.compute_metrics(metric.results)
    assert metric.applicable == applicable
    if applicable:
        assert results[0]['displacement'].shape[0] == 4
        assert set(values) == {'align_PSNR', 'align_SSIM'} and metric.overall['frames'] == 3
    else:
        assert values == {} and 'displacement' not in results[0]


def test_a_frame_the_warp_leaves_empty_keeps_the_later_frames_indices():
    """Frame 12 of the clip (t = 2) is warped wholly out of the frame: it has no score, and
    frames 11 and 13 are filed under their own indices, not shifted onto 12."""
    big = textured(16, 32)
    gt = torch.stack([big[:, :, 4 * t:4 * t + 16] for t in range(4)])
    flow = torch.zeros(4, 2, 16, 16)
    flow[:, 0] = 4.0  # the true motion
    flow[2, 0] = 100.0  # frame t = 2: every pixel fetched from outside the frame
    scores = alignment_scores(gt, flow, 1)
    assert list(scores) == [1, 3] and all(p > 100 for p, _ in scores.values())
    metric = MCAlignmentMetric()
    metric.process({}, [dict(gt=gt, displacement=flow, displacement_grid=1, key='seq',
                             frame_indices=[10, 11, 12, 13])])
    assert [f for f, _, _ in metric.results[0]['frames']] == [11, 13]
    assert metric.compute_metrics(metric.results)['align_PSNR'] > 100
