import pytest
import torch

import mtu_toolkit.models  # noqa: F401
from mtu_toolkit.models import count_parameters
from mtu_toolkit.models.backbones import DetailNet, MTUNet
from mtu_toolkit.registry import MODELS

# the paper's inference-network parameter counts (docs/network.md), to three decimals (millions)
PAPER_COUNTS = [(1, 26, 8, '0.538'), (2, 26, 8, '1.037'), (4, 26, 8, '2.036'),
                (10, 26, 8, '5.031'), (10, 48, 6, '13.803')]


@pytest.mark.parametrize('units,ch,blocks,expected', PAPER_COUNTS)
def test_parameter_counts_match_paper(units, ch, blocks, expected):
    net = MTUNet(num_units=units, channels=ch, num_blocks=blocks)
    inference, training = count_parameters(net)
    assert f'{inference / 1e6:.3f}' == expected
    # the auxiliary deblur layers (3x3 conv 2ch -> 3) exist only in the training network
    assert training - inference == (units - 1) * (9 * 2 * ch * 3 + 3)


def test_detail_net_parameter_count():
    assert sum(p.numel() for p in DetailNet(26, 8).parameters()) == 499252


def test_registered_and_built_from_config():
    net = MODELS.build(dict(type='MTUNet', num_units=1, channels=8, num_blocks=1))
    assert isinstance(net, MTUNet)


def _window(n=1, h=32, w=48):
    return torch.rand(n, 5, 3, h, w)


def test_forward_shapes_and_state():
    net = MTUNet(num_units=3, channels=8, num_blocks=1).train()
    out, state = net(_window(2))
    assert out['out'].shape == (2, 3, 32, 48)
    assert len(out['aux_outs']) == 2
    assert out['mc'][0]['cost_volume'].shape == (2, 441, 8, 12)
    assert state.feat.shape == (2, 8, 32, 48)
    assert state.motion[0].shape == (2, 16, 8, 12)
    net.eval()
    with torch.no_grad():
        out, _ = net(_window(2), state.detach())
    assert out['aux_outs'] == [] and 'cost_volume' not in out['mc'][0]


@pytest.mark.parametrize('every,expected', [(False, 1), (True, 4)])
def test_skipping_option_changes_number_of_matchings(every, expected, monkeypatch):
    net = MTUNet(num_units=4, channels=8, num_blocks=1, match_every_unit=every).eval()
    calls = []
    original = net.mc_head.estimate
    monkeypatch.setattr(net.mc_head, 'estimate', lambda c, p: calls.append(1) or original(c, p))
    warps = []
    original_warp = net.mc_head.warp
    monkeypatch.setattr(net.mc_head, 'warp', lambda f, m: warps.append(1) or original_warp(f, m))
    with torch.no_grad():
        net(_window())
    assert len(calls) == expected
    assert len(warps) == 3  # every unit but the last warps the previous feature for the next
    assert len(net.motion_layers) == expected


def test_first_frame_warp_is_identity():
    """At a clip's first frame the previous motion feature is the current one: zero motion."""
    net = MTUNet(num_units=2, channels=8, num_blocks=1).eval()
    with torch.no_grad():
        out, _ = net(_window(1, 32, 32))
    assert (out['mc'][0]['motion'] == 0).all()


@pytest.mark.parametrize('option', [dict(structure_injection=False), dict(motion_layer=False),
                                    dict(residual=False)])
def test_ablation_options_run(option):
    net = MTUNet(num_units=2, channels=8, num_blocks=1, **option).train()
    out, _ = net(_window())
    assert out['out'].shape == (1, 3, 32, 48)
    if option.get('motion_layer') is False:
        assert net.motion_layers is None


def test_residual_learning_adds_input():
    net = MTUNet(num_units=1, channels=8, num_blocks=1).eval()
    for p in net.out_conv.parameters():
        torch.nn.init.zeros_(p)
    w = _window()
    with torch.no_grad():
        out, _ = net(w)
    torch.testing.assert_close(out['out'], w[:, 2])


def test_kaiming_init_scales_and_keeps_heads_and_output_init():
    torch.manual_seed(0)
    net = MTUNet(num_units=2, channels=16, num_blocks=2, kaiming_init=True, zero_init_output=True,
                 mc_head=dict(type='FANMCHead', mid_channels=8, num_blocks=1))
    enc1 = net.units[0].enc1[0]  # 5x5 conv, fan-in 32*25
    assert enc1.weight.std().item() == pytest.approx((2 / (32 * 25)) ** 0.5, rel=0.1)
    assert enc1.bias.abs().max() == 0
    block = net.units[0].blocks[0].body
    ratio = block[1][0].weight.std() / block[0][0].weight.std()
    assert ratio.item() == pytest.approx(0.1, rel=0.15)
    assert net.out_conv.weight.abs().max() == 0  # the deblur layers keep their zero init
    # FAN's last layer keeps its identity filters (zero weights, centre-tap bias 1)
    last = net.mc_head.kernel_net[-1]
    assert last.weight.abs().max() == 0 and last.bias.view(16, 25)[:, 12].eq(1).all()
    default = MTUNet(num_units=2, channels=16, num_blocks=2)
    assert default.units[0].enc1[0].weight.std() < 0.6 * enc1.weight.std()
