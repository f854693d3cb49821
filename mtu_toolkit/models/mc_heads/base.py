"""The interface every motion-compensation (MC) head implements.

An MC head aligns the previous frame's feature to the current frame. It sees the motion
features of both frames (``2*ch`` channels at 1/4 resolution, from the backbone's motion layer)
and warps a full-resolution feature (``ch`` channels)::

    aux = head.estimate(cur_motion, prev_motion)    # dict(motion=..., [cost_volume=...])
    warped = head.warp(feat_prev, aux['motion'])

``estimate`` and ``warp`` are separate so that the backbone can match once (first unit) and
re-use the motion in every later unit (feature-matching skipping, paper App. A.3). A head whose
``estimate`` gives a ``cost_volume`` (with ``max_displacement``), which the motion loss trains,
sets ``gives_cost_volume = True``; the training tools then check that the data give the flow
the loss needs.

A head states what it costs outside its convolutions (which FLOP counters see by themselves)
through :meth:`~BaseMCHead.estimate_macs` and :meth:`~BaseMCHead.warp_macs` (default 0); the
base class counts every call while :func:`count_mc_macs` is active. For export, ``estimate`` and
``warp`` must be traceable: use :mod:`mtu_toolkit.ops` (which switches to its pure-PyTorch
twins under a trace) or plain tensor operations, with no Python branching on tensor values.
"""
import functools
from contextlib import contextmanager

import torch.nn as nn

#: the active MAC counters (lists that the counted calls append to)
_COUNTERS = []


@contextmanager
def count_mc_macs():
    """Collect the multiply-accumulates that MC heads do outside their convolutions.

    Yields a list; every ``estimate`` / ``warp`` call of any head appends its
    :meth:`~BaseMCHead.estimate_macs` / :meth:`~BaseMCHead.warp_macs` while the context is open.
    """
    found = []
    _COUNTERS.append(found)
    try:
        yield found
    finally:
        _COUNTERS.remove(found)


def _counted(method, cost):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if _COUNTERS:
            macs = getattr(self, cost)(*args)
            for found in _COUNTERS:
                found.append(macs)
        return method(self, *args, **kwargs)
    return call


class BaseMCHead(nn.Module):
    """Base class of MC heads.

    Args:
        motion_channels (int): channels of the motion features (``2*ch``), at 1/4 resolution.
        feat_channels (int): channels of the feature to warp (``ch``), at full resolution.
    """

    #: ratio between the feature to warp and the motion features' resolution
    scale = 4
    #: False for heads that ignore motion features (the backbone then builds no motion layer)
    needs_motion_features = True
    #: True for heads whose ``estimate`` gives a ``cost_volume`` (what the motion loss trains)
    gives_cost_volume = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # a subclass's own estimate / warp report their cost to count_mc_macs
        if 'estimate' in cls.__dict__:
            cls.estimate = _counted(cls.__dict__['estimate'], 'estimate_macs')
        if 'warp' in cls.__dict__:
            cls.warp = _counted(cls.__dict__['warp'], 'warp_macs')

    def __init__(self, motion_channels, feat_channels):
        super().__init__()
        self.motion_channels = motion_channels
        self.feat_channels = feat_channels

    def estimate(self, cur, prev):
        """Estimate motion from ``cur`` (N, 2ch, h, w) to ``prev`` (N, 2ch, h, w).

        Returns:
            dict: ``motion`` (whatever :meth:`warp` takes) and, for heads trained with the
            motion loss, ``cost_volume`` (N, (2D+1)^2, h, w) logits and ``max_displacement`` D.
        """
        raise NotImplementedError

    def warp(self, feat, motion):
        """Warp ``feat`` (N, ch, H, W) with ``motion`` from :meth:`estimate`; H = 4h, W = 4w."""
        raise NotImplementedError

    def displacement(self, motion, frame):
        """The motion of :meth:`estimate` as a displacement field, for measuring how well it
        aligns frames (``MCAlignmentMetric``): ``(flow, grid)`` with ``flow`` (N, 2, H/grid,
        W/grid) float (dx, dy) in full-resolution pixels, ``frame_t(x) ~ frame_{t-1}(x +
        flow)``, given on a grid ``grid`` times coarser than ``frame`` (N, 3, H, W); None for
        heads whose motion is no displacement (e.g. per-pixel filters). Default None."""
        return None

    def estimate_macs(self, cur, prev):
        """Multiply-accumulates of one :meth:`estimate` outside convolutions (e.g. a cost
        volume's dot products); 0 by default."""
        return 0

    def warp_macs(self, feat, motion):
        """Multiply-accumulates of one :meth:`warp` outside convolutions (gathers: 0)."""
        return 0

    def forward(self, cur, prev, feat):
        aux = self.estimate(cur, prev)
        return self.warp(feat, aux['motion']), aux
