import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mtu_toolkit.evaluation import VideoRestorationMetric, psnr, ssim
from mtu_toolkit.registry import METRICS


def _pair(rng, shape=(40, 56, 3), noise=0.1):
    a = rng.random(shape)
    return a, np.clip(a + rng.normal(0, noise, shape), 0, 1)


def _sk_ssim(a, b):
    return structural_similarity(a, b, channel_axis=-1, data_range=1, gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False)


@pytest.mark.parametrize('noise', [0.01, 0.1, 0.5])
def test_psnr_ssim_equal_skimage(noise):
    rng = np.random.default_rng(int(noise * 100))
    a, b = _pair(rng, noise=noise)
    assert abs(psnr(a, b) - peak_signal_noise_ratio(a, b, data_range=1)) < 1e-4
    assert abs(ssim(a, b) - _sk_ssim(a, b)) < 1e-4
    assert abs(ssim(a, b, dtype=torch.float64) - _sk_ssim(a, b)) < 1e-10


def test_layouts_and_batches_agree():
    rng = np.random.default_rng(1)
    pairs = [_pair(rng, (23, 31, 3)) for _ in range(3)]
    chw = [torch.from_numpy(x).permute(2, 0, 1) for p in pairs for x in p]
    assert abs(ssim(chw[0], chw[1]) - ssim(*pairs[0])) < 1e-7
    batch_pred, batch_gt = torch.stack(chw[0::2]), torch.stack(chw[1::2])
    ref_p = [peak_signal_noise_ratio(a, b, data_range=1) for a, b in pairs]
    ref_s = [_sk_ssim(a, b) for a, b in pairs]
    assert torch.allclose(psnr(batch_pred, batch_gt), torch.tensor(ref_p, dtype=torch.float64),
                          atol=1e-6)
    assert torch.allclose(ssim(batch_pred, batch_gt), torch.tensor(ref_s, dtype=torch.float64),
                          atol=1e-4)


def test_identical_and_bad_inputs():
    a = torch.rand(3, 16, 16)
    assert psnr(a, a) == float('inf')
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match='differ in shape'):
        psnr(a, torch.rand(3, 16, 17))
    with pytest.raises(ValueError, match='RGB'):
        ssim(torch.rand(16, 16), torch.rand(16, 16))
    with pytest.raises(ValueError, match='window'):
        ssim(torch.rand(3, 8, 8), torch.rand(3, 8, 8))


def test_video_metric_per_sequence_and_overall():
    rng = np.random.default_rng(2)
    metric = METRICS.build(dict(type='VideoRestorationMetric'))
    assert isinstance(metric, VideoRestorationMetric)
    seqs = {'a': 2, 'b': 3}
    ref = {}
    for key, n in seqs.items():
        frames = [_pair(rng, (20, 24, 3), noise=0.05 * (1 + len(key))) for _ in range(n)]
        pred = torch.stack([torch.from_numpy(p).permute(2, 0, 1) for p, _ in frames]).float()
        gt = torch.stack([torch.from_numpy(g).permute(2, 0, 1) for _, g in frames]).float()
        # the metric clamps: a prediction out of range scores as its clamped version
        pred_out = pred.clone()
        pred_out[0, 0, 0, 0] = 1.7
        pred[0, 0, 0, 0] = 1.0
        ref[key] = [(peak_signal_noise_ratio(g.numpy(), p.numpy(), data_range=1),
                     _sk_ssim(p.permute(1, 2, 0).double().numpy(),
                              g.permute(1, 2, 0).double().numpy()))
                    for p, g in zip(pred, gt)]
        metric.process({}, [dict(pred=pred_out, gt=gt, key=key, frame_indices=list(range(n)))])
    out = metric.evaluate(size=len(seqs))
    all_frames = [v for key in seqs for v in ref[key]]
    assert out['PSNR'] == pytest.approx(np.mean([v[0] for v in all_frames]), abs=1e-4)
    assert out['SSIM'] == pytest.approx(np.mean([v[1] for v in all_frames]), abs=1e-4)
    table = {r['sequence']: r for r in metric.sequence_table}
    assert table['b']['frames'] == 3
    assert table['b']['PSNR'] == pytest.approx(np.mean([v[0] for v in ref['b']]), abs=1e-4)
    assert table['a']['SSIM'] == pytest.approx(np.mean([v[1] for v in ref['a']]), abs=1e-4)
    # overall weighs frames, not sequences
    assert out['PSNR'] != pytest.approx((table['a']['PSNR'] + table['b']['PSNR']) / 2, abs=1e-6)
    assert len(metric.frame_table) == 5 and metric.overall['frames'] == 5


def test_video_metric_needs_gt():
    metric = VideoRestorationMetric()
    with pytest.raises(KeyError, match='gt'):
        metric.process({}, [dict(pred=torch.rand(1, 3, 16, 16), key='x')])


def test_video_metric_default_protocol_is_toolkit():
    metric = METRICS.build(dict(type='VideoRestorationMetric'))
    assert metric.protocol_info == dict(protocol='toolkit', align=False,
                                        description=metric.protocol.summary)
    assert 'Gaussian' in metric.protocol.summary and not metric.protocol.skip_first_frame
    built = METRICS.build(dict(type='VideoRestorationMetric', protocol='matlab', align=True))
    assert built.protocol.name == 'matlab' and built.protocol_info['align'] is True
    # the toolkit protocol scores exactly as psnr()/ssim() on the clamped frames
    rng = np.random.default_rng(5)
    gt = torch.from_numpy(rng.random((2, 3, 20, 24))).float()
    pred = gt + 0.2 * torch.from_numpy(rng.standard_normal((2, 3, 20, 24))).float()
    metric.process({}, [dict(pred=pred, gt=gt, key='s', frame_indices=[0, 1])])
    metric.evaluate(size=1)
    assert [r['PSNR'] for r in metric.frame_table] == psnr(pred.clamp(0, 1), gt).tolist()
    assert [r['SSIM'] for r in metric.frame_table] == ssim(pred.clamp(0, 1), gt).tolist()


def test_video_metric_device_not_here_is_one_line_when_built(monkeypatch):
    """``+test_evaluator.device=cuda`` (docs/evaluation.md) on a machine without it: refused when
    the metric is built, in one line (exit 2 from the tools), not a traceback at the first
    frame scored."""
    from mtu_toolkit.checked_registry import ComponentArgumentError
    from mtu_toolkit.engine.config_loader import user_error
    metric = METRICS.build(dict(type='VideoRestorationMetric', device='cpu'))
    assert str(metric.device) == 'cpu'
    assert METRICS.build(dict(type='VideoRestorationMetric')).device is None
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(ComponentArgumentError, match="device='cuda'.*CUDA is not available") \
            as info:
        METRICS.build(dict(type='VideoRestorationMetric', device='cuda'))
    assert "give device='cpu'" in str(info.value) and '--device' not in str(info.value)
    message, code = user_error(info.value)
    assert code == 2 and '\n' not in message and message.startswith('VideoRestorationMetric:')
    with pytest.raises(ComponentArgumentError, match="bad device 'gpu'"):
        METRICS.build(dict(type='VideoRestorationMetric', device='gpu'))
    # a GPU index the machine does not have
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    with pytest.raises(ComponentArgumentError, match='has 1 CUDA device'):
        METRICS.build(dict(type='VideoRestorationMetric', device='cuda:1'))
