"""FANMCHead: filter-adaptive alignment against an explicit unfold-based reference."""
import re

import torch
import torch.nn.functional as F

from mtu_toolkit.models.mc_heads import FANMCHead
from mtu_toolkit.registry import MODELS


def _reference_filter(feat, kernels, k, scale=4):
    """out[n,c,y,x] = sum_t K[n,c,t,y//s,x//s] * patch_t(feat)[n,c,y,x], via F.unfold."""
    n, c, h, w = feat.shape
    patches = F.unfold(feat, k, padding=k // 2).view(n, c, k * k, h, w)
    full = kernels.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    return (patches * full).sum(2)


def test_parameter_count_is_the_documented_one():
    stated = re.search(r'Parameters: ([\d,]+) at ch 26', FANMCHead.__doc__).group(1)
    head = FANMCHead(52, 26)
    assert sum(p.numel() for p in head.parameters()) == int(stated.replace(',', ''))


def test_registered_under_class_name_and_alias():
    for name in ('FANMCHead', 'fan'):
        head = MODELS.build(dict(type=name, motion_channels=8, feat_channels=3, mid_channels=8,
                                 num_blocks=1))
        assert isinstance(head, FANMCHead)


def test_warp_equals_unfold_reference_at_odd_block_counts():
    head = FANMCHead(8, 3, kernel_size=5)
    feat = torch.randn(2, 3, 12, 20, dtype=torch.float64)
    kernels = torch.randn(2, 3, 25, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(head.warp(feat, kernels), _reference_filter(feat, kernels, 5))


def test_one_hot_kernel_shifts_and_untrained_head_is_identity():
    head = FANMCHead(8, 3, kernel_size=3, mid_channels=8, num_blocks=1)
    feat = torch.randn(1, 3, 8, 8)
    kernels = torch.zeros(1, 3, 9, 2, 2)
    kernels[:, :, 5] = 1  # tap (i=1, j=2): out(y, x) = feat(y, x + 1)
    out = head.warp(feat, kernels)
    torch.testing.assert_close(out[..., :-1], feat[..., 1:])
    assert (out[..., -1] == 0).all()
    cur, prev = torch.randn(1, 8, 2, 2), torch.randn(1, 8, 2, 2)
    warped, aux = head(cur, prev, feat)
    assert aux['motion'].shape == (1, 3, 9, 2, 2) and 'cost_volume' not in aux
    torch.testing.assert_close(warped, feat)


def test_gradients_reach_the_kernel_network():
    head = FANMCHead(8, 3, mid_channels=8, num_blocks=1)
    cur, prev = torch.randn(1, 8, 3, 4), torch.randn(1, 8, 3, 4)
    warped, _ = head(cur, prev, torch.randn(1, 3, 12, 16))
    warped.square().mean().backward()
    assert head.kernel_net[-1].weight.grad.abs().sum() > 0
