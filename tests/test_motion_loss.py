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
    volume, other = torch.randn(1, 25, 3, 3), torch.randn(1, 25, 3, 3)
    flow = torch.full((1, 2, 12, 12), 4.0)  # (1, 1) at 1/4 res
    loss = MotionCrossEntropyLoss(loss_weight=0.5)([volume, other], flow, d)
    idx = (1 + d) * 5 + (1 + d)

    def manual(v):
        return -F.log_softmax(v, 1)[:, idx].mean()
    # the mean over the matching units' volumes, as the reference implementation
    torch.testing.assert_close(loss, 0.5 * (manual(volume) + manual(other)) / 2)


def test_target_rounds_half_to_even_after_the_offset():
    """round(f + D), as the reference: with an odd D, 0.5 rounds up (5.5 -> 6), not to 0."""
    flow = torch.full((1, 2, 4, 4), 2.0)  # 0.5 at 1/4 res
    d = 5
    target = flow_to_motion_target(flow, d)
    assert (target == 6 * 11 + 6).all()
    assert (flow_to_motion_target(flow, 10) == 10 * 21 + 10).all()  # 10.5 -> 10


def test_first_frame_target_is_zero_motion():
    """At a clip's first frame the network matches the frame with itself: centre class."""
    d = 2
    volume = torch.randn(1, 25, 3, 3)
    outputs = dict(mc=[dict(cost_volume=volume, max_displacement=d)])
    targets = dict(gt=torch.zeros(1, 3, 12, 12), flow=torch.full((1, 2, 12, 12), 8.0),
                   first_frame=True)
    loss = MotionCrossEntropyLoss().frame_term(outputs, targets)
    centre = d * 5 + d
    torch.testing.assert_close(loss, -F.log_softmax(volume, 1)[:, centre].mean())
    targets['first_frame'] = False
    moved = (2 + d) * 5 + (2 + d)
    torch.testing.assert_close(MotionCrossEntropyLoss().frame_term(outputs, targets),
                               -F.log_softmax(volume, 1)[:, moved].mean())
