"""Motion loss: cross-entropy of the cost volume against flow-derived one-hot targets (Eq. 2)."""
import torch.nn.functional as F

from ...registry import MODELS
from .frame_loss import FrameLoss


def flow_to_motion_target(flow, max_displacement, scale=4):
    """Turn a full-resolution optical flow into the motion loss's class targets.

    Args:
        flow (Tensor): (N, 2, H, W) float, (dx, dy) in full-resolution pixels from frame t to
            frame t-1 (``gt_t(x) ~ gt_{t-1}(x + flow(x))``).
        max_displacement (int): D of the cost volume.
        scale (int): resolution ratio of the cost volume. Default 4.

    Returns:
        Tensor: int64 (N, ceil(H/scale), ceil(W/scale)), class index
        ``round(fy + D) * (2D+1) + round(fx + D)`` of the area-downsampled flow divided by
        ``scale`` and clamped to [-D, D] (H, W not multiples of ``scale`` are edge-padded).
        Rounding is half to even after adding D, as the reference implementation does.
    """
    d = int(max_displacement)
    h, w = flow.shape[-2:]
    pad_h, pad_w = -h % scale, -w % scale
    if pad_h or pad_w:
        flow = F.pad(flow, (0, pad_w, 0, pad_h), mode='replicate')
    small = F.avg_pool2d(flow.float(), scale) / scale
    small = (small.clamp(-d, d) + d).round().long()
    return small[:, 1] * (2 * d + 1) + small[:, 0]


@MODELS.register_module()
class MotionCrossEntropyLoss(FrameLoss):
    """``alpha * CE(softmax(C), one_hot(target))`` averaged over positions and over the
    matching units' volumes (the reference implementation's mean).

    At a clip's first frame the network matches the frame with itself; the target is then zero
    motion (the centre class), as in the reference, whatever flow the data holds.

    In the paper's recipe this loss trains the network through its own optimiser at 0.01 x
    the deblurring learning rate, with ``alpha = 1`` (``configs/_base_/schedules``); with one
    optimiser for both losses a weight is the only lever (the demo uses 0.001).

    Args:
        loss_weight (float): alpha. Default 1.0.
    """

    optim_group = 'motion'

    def __init__(self, loss_weight=1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, cost_volumes, flow, max_displacement):
        """cost_volumes: list of (N, (2D+1)^2, h, w) logits; flow: (N, 2, H, W) with H = 4h."""
        target = flow_to_motion_target(flow, max_displacement)
        loss = sum(F.cross_entropy(v, target[:, :v.shape[2], :v.shape[3]]) for v in cost_volumes)
        return self.loss_weight * loss / len(cost_volumes)

    def frame_term(self, outputs, targets):
        volumes = [a['cost_volume'] for a in outputs['mc'] if 'cost_volume' in a]
        if not volumes:
            return None
        if targets['first_frame']:
            flow = volumes[0].new_zeros(volumes[0].shape[0], 2, *targets['gt'].shape[-2:])
        elif 'flow' in targets:
            flow = targets['flow']
        else:
            raise KeyError("motion_loss is set but data_samples has no 'flow': enable the "
                           "dataset's flow (with_flow=True) or set model.motion_loss=None")
        return self(volumes, flow, outputs['mc'][0]['max_displacement'])
