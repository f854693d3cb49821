"""FlowMCHead: bilinear flow warping against an explicit reference, pyramid shapes, gradients."""
import re

import numpy as np
import torch

from mtu_toolkit.models.mc_heads import FlowMCHead
from mtu_toolkit.models.mc_heads.flow import flow_warp, upsample_flow
from mtu_toolkit.registry import MODELS


def _bilinear_reference(feat, flow):
    """Per-pixel bilinear sampling of feat at (x + fx, y + fy), zero outside (numpy loops)."""
    feat, flow = feat.numpy(), flow.numpy()
    n, c, h, w = feat.shape
    out = np.zeros_like(feat)

    def at(b, y, x):
        return feat[b, :, y, x] if 0 <= y < h and 0 <= x < w else 0.

    for b in range(n):
        for y in range(h):
            for x in range(w):
                sx, sy = x + flow[b, 0, y, x], y + flow[b, 1, y, x]
                x0, y0 = int(np.floor(sx)), int(np.floor(sy))
                ax, ay = sx - x0, sy - y0
                top = (1 - ax) * at(b, y0, x0) + ax * at(b, y0, x0 + 1)
                bottom = (1 - ax) * at(b, y0 + 1, x0) + ax * at(b, y0 + 1, x0 + 1)
                out[b, :, y, x] = (1 - ay) * top + ay * bottom
    return torch.from_numpy(out)


def test_parameter_count_is_the_documented_one():
    stated = re.search(r'Parameters: ([\d,]+) at ch 26', FlowMCHead.__doc__).group(1)
    head = FlowMCHead(52, 26)
    assert sum(p.numel() for p in head.parameters()) == int(stated.replace(',', ''))


def test_registered_under_class_name_and_alias():
    for name in ('FlowMCHead', 'flow'):
        head = MODELS.build(dict(type=name, motion_channels=8, feat_channels=3))
        assert isinstance(head, FlowMCHead)


def test_flow_warp_equals_bilinear_reference():
    feat = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    flow = torch.randn(2, 2, 5, 7, dtype=torch.float64) * 2
    torch.testing.assert_close(flow_warp(feat, flow), _bilinear_reference(feat, flow))


def test_integer_flow_is_an_exact_shift():
    feat = torch.randn(1, 2, 6, 9, dtype=torch.float64)
    flow = torch.zeros(1, 2, 6, 9, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = 2, -1  # out(y, x) = feat(y - 1, x + 2)
    out = flow_warp(feat, flow)
    torch.testing.assert_close(out[:, :, 1:, :-2], feat[:, :, :-1, 2:])
    # outside the frame: zero (up to the rounding of the normalised grid)
    assert out[:, :, 0].abs().max() < 1e-12 and out[..., -2:].abs().max() < 1e-12


def test_upsample_flow_rescales_values_per_axis():
    flow = torch.ones(1, 2, 3, 5)
    up = upsample_flow(flow, (12, 10))
    assert up.shape == (1, 2, 12, 10)
    torch.testing.assert_close(up[:, 0], torch.full((1, 12, 10), 2.))
    torch.testing.assert_close(up[:, 1], torch.full((1, 12, 10), 4.))


def test_untrained_head_is_identity_and_all_levels_learn():
    head = FlowMCHead(8, 3, pyramid_channels=(8, 8, 8), estimator_channels=(8, 8))
    cur, prev = torch.randn(1, 8, 5, 7), torch.randn(1, 8, 5, 7)  # 1/16 level: 2x2
    feat = torch.randn(1, 3, 20, 28, dtype=torch.float64).float()
    warped, aux = head(cur, prev, feat)
    assert aux['motion'].shape == (1, 2, 20, 28) and 'cost_volume' not in aux
    torch.testing.assert_close(warped, feat)
    (warped * torch.randn_like(warped)).sum().backward()
    for estimator in head.estimators:
        assert estimator[-1].weight.grad.abs().sum() > 0


def test_estimate_macs_counts_every_level_volume():
    head = FlowMCHead(8, 3, pyramid_channels=(4, 6), max_displacement=1)
    assert head.estimate_macs(torch.zeros(1, 8, 5, 7), None) == 9 * (4 * 5 * 7 + 6 * 3 * 4)
