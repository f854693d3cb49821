import torch
import torch.nn.functional as F

from mtu_toolkit.models.mc_heads import CorrelationMCHead, NoneMCHead
from mtu_toolkit.registry import MODELS


def _shifted_pair(dx, dy, h=24, w=28, c=16):
    """prev is cur moved so that cur(x) = prev(x + d): the head must find d = (dx, dy)."""
    big = torch.randn(1, c, h + 20, w + 20)
    cur = big[:, :, 10:10 + h, 10:10 + w]
    prev = big[:, :, 10 - dy:10 - dy + h, 10 - dx:10 - dx + w]
    return cur, prev


def test_recovers_known_translation_in_train_and_eval():
    head = CorrelationMCHead(16, 8, max_displacement=4, smooth=1)
    cur, prev = _shifted_pair(3, -2)
    for training in (True, False):
        head.train(training)
        disp = head.estimate(cur, prev)['motion']
        inner = disp[0, :, 5:-5, 5:-5]
        assert (inner[0] == 3).all() and (inner[1] == -2).all()


def test_train_volume_is_smoothed_cosine_and_argmax_matches_eval():
    head = CorrelationMCHead(16, 8, max_displacement=3, smooth=5)
    cur, prev = torch.randn(2, 16, 10, 12), torch.randn(2, 16, 10, 12)
    aux = head.train().estimate(cur, prev)
    assert aux['cost_volume'].shape == (2, 49, 10, 12)
    # centre channel before smoothing is the cosine similarity at zero shift
    centre = F.cosine_similarity(cur, prev, dim=1)
    raw = CorrelationMCHead(16, 8, max_displacement=3, smooth=0).train().estimate(cur, prev)
    torch.testing.assert_close(raw['cost_volume'][:, 24], centre, rtol=1e-5, atol=1e-5)
    assert torch.equal(aux['motion'], head.eval().estimate(cur, prev)['motion'])


def test_warp_moves_full_resolution_feature_by_four_times_displacement():
    head = CorrelationMCHead(16, 3)
    feat = torch.randn(1, 3, 16, 16)
    disp = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    disp[:, 0] = 1  # dx = 1 at 1/4 res = 4 pixels
    out = head.warp(feat, disp)
    torch.testing.assert_close(out[..., :12], feat[..., 4:])
    assert (out[..., 12:] == 0).all()


def test_heads_have_no_parameters_and_build_from_registry():
    for cfg in (dict(type='CorrelationMCHead'), dict(type='NoneMCHead')):
        head = MODELS.build(dict(cfg, motion_channels=52, feat_channels=26))
        assert sum(p.numel() for p in head.parameters()) == 0
    feat = torch.randn(1, 4, 8, 8)
    assert NoneMCHead(8, 4)(None, None, feat)[0] is feat


def test_warp_reuses_one_buffer_in_inference_only():
    """With ``reuse_warp_output`` (the direct inference form) eval-mode warps without autograd
    write one buffer; training and autograd get fresh, differentiable results."""
    from mtu_toolkit.ops import uses_extension, warp_by_displacement_reference
    head = CorrelationMCHead(16, 8).eval()
    head.reuse_warp_output = True
    feat = torch.randn(1, 8, 16, 20)
    motion = torch.randint(-2, 3, (1, 2, 4, 5))
    with torch.no_grad():
        a = head.warp(feat, motion)
        b = head.warp(2 * feat, motion)
    assert torch.equal(b, warp_by_displacement_reference(2 * feat, motion, 4))
    assert (a.data_ptr() == b.data_ptr()) == uses_extension(feat)
    x = feat.clone().requires_grad_()
    c = head.warp(x, motion)
    assert c.grad_fn is not None and c.data_ptr() != b.data_ptr()
    c.sum().backward()
    assert x.grad is not None
    with torch.no_grad():
        d = head.train().warp(feat, motion)
    assert d.data_ptr() != b.data_ptr()
    assert torch.equal(d, warp_by_displacement_reference(feat, motion, 4))
    head.reuse_warp_output = False
    with torch.no_grad():
        assert head.eval().warp(feat, motion).data_ptr() != b.data_ptr()


def test_inference_estimates_reuse_their_buffers():
    """In the direct inference form (``fast_normalize``, ``reuse_warp_output``) estimates
    normalise into one pair of buffers (in the argmax's layout, which needs no workspace),
    call after call, with the displacements of a head that keeps nothing."""
    from mtu_toolkit.ops import uses_extension
    torch.manual_seed(0)
    plain = CorrelationMCHead(16, 8, max_displacement=3).eval()
    head = CorrelationMCHead(16, 8, max_displacement=3).eval()
    head.fast_normalize = head.reuse_warp_output = True
    seen = []
    with torch.no_grad():
        for _ in range(3):
            cur, prev = torch.randn(1, 16, 12, 16), torch.randn(1, 16, 12, 16)
            assert torch.equal(head.estimate(cur, prev)['motion'],
                               plain.estimate(cur, prev)['motion'])
            seen.append([head._kept._buffers[f'matching{i}'].data_ptr() for i in (0, 1)])
            if uses_extension(cur):
                assert head._kept._buffers['matching0'].dim() == 5  # the segmented layout
    assert seen[0] == seen[1] == seen[2] and 0 not in seen[0]
    assert 'argmax' not in head._kept._buffers
    assert not plain._kept._buffers


def test_inference_estimate_of_a_clips_first_frame_lays_out_once():
    """At a clip's first frame the previous motion feature is the current one (the same
    tensor): the fast form lays it out once and matches it with itself, as a head that keeps
    nothing does."""
    torch.manual_seed(1)
    plain = CorrelationMCHead(16, 8, max_displacement=3).eval()
    head = CorrelationMCHead(16, 8, max_displacement=3).eval()
    head.fast_normalize = True
    cur = torch.randn(1, 16, 12, 20)
    with torch.no_grad():
        assert torch.equal(head.estimate(cur, cur)['motion'], plain.estimate(cur, cur)['motion'])
    assert 'matching0' in head._kept._buffers and 'matching1' not in head._kept._buffers


def test_fast_normalize_matches_f_normalize_in_inference_only(monkeypatch):
    """``fast_normalize`` (the direct inference form): the compiled normalisation and its
    plane-by-plane reference equal ``F.normalize`` to float rounding and give the same
    displacements; training and autograd keep ``F.normalize``."""
    from mtu_toolkit.ops import normalize_features, normalize_features_reference
    torch.manual_seed(0)
    x = torch.randn(2, 52, 9, 11) * 30
    x[0, :, 2, 3] = 0  # a zero vector stays zero (eps)
    ref = F.normalize(x, dim=1)
    for got in (normalize_features_reference(x), normalize_features(x)):
        torch.testing.assert_close(got, ref, rtol=0, atol=2e-7)
        assert (got[0, :, 2, 3] == 0).all()
    head = CorrelationMCHead(52, 26, max_displacement=3).eval()
    cur, prev = torch.randn(1, 52, 12, 16), torch.randn(1, 52, 12, 16)
    with torch.no_grad():
        exact = head.estimate(cur, prev)['motion']
        head.fast_normalize = True
        assert torch.equal(head.estimate(cur, prev)['motion'], exact)
    calls = []
    real = F.normalize
    monkeypatch.setattr(F, 'normalize', lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        head.estimate(cur, prev)          # fast: F.normalize not called
    assert not calls
    head.estimate(cur.requires_grad_(), prev)  # autograd: F.normalize
    assert len(calls) == 2
    calls.clear()
    with torch.no_grad():
        head.train().estimate(cur, prev)  # training: F.normalize
    assert len(calls) == 2
