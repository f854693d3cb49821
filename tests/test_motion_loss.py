import torch
import torch.nn.functional as F

from mtu_toolkit.models.losses import MotionCrossEntropyLoss, flow_to_motion_target


def test_target_of_uniform_flow():
    d = 10
    flow = torch.zeros(2, 2, 16, 20)
    flow[0, 0], flow[0, 1] = 8.0, -12.0   # -> (2, -3) at 1/4 res
    flow[1, 0], flow[1, 1] = 100.0, 5.0   # dx clamped to D; dy 1.25 rounds to 1
    target = flow_to_motion_target(flow, d)
    assert target.shape == (2, 4, 5) and target.dtype == torch.int64
    assert (target[0] == (-3 + d) * 21 + (2 + d)).all()
    assert (target[1] == (1 + d) * 21 + (d + d)).all()


def test_target_area_downsamples_and_handles_odd_sizes():
    flow = torch.zeros(1, 2, 6, 7)
    flow[0, 0, :4, :4] = torch.tensor([[0, 0, 16, 16]] * 4).float()  # block mean 8 -> dx 2
    target = flow_to_motion_target(flow, 4)
    assert target.shape == (1, 2, 2)
    assert target[0, 0, 0] == 4 * 9 + (2 + 4)
    assert target[0, 1, 1] == 4 * 9 + 4  # edge-padded zero flow


def test_cross_entropy_against_manual():
    d = 2
    volume = torch.randn(1, 25, 3, 3)
    flow = torch.full((1, 2, 12, 12), 4.0)  # (1, 1) at 1/4 res
    loss = MotionCrossEntropyLoss(loss_weight=0.5)([volume, volume], flow, d)
    idx = (1 + d) * 5 + (1 + d)
    manual = -F.log_softmax(volume, 1)[:, idx].mean()
    torch.testing.assert_close(loss, 0.5 * 2 * manual)
