"""The paper's lightweight MC head: cosine cost volume, argmax, integer warp (Sec. 3.4,
App. A.1)."""
import torch
import torch.nn.functional as F

from ...checked_registry import ComponentArgumentError
from ...memory import KeptBuffers
from ...ops import (correlation, correlation_argmax, matching_features, matching_shape,
                    smooth_cost_volume, uses_extension, volume_argmax_to_displacement,
                    warp_by_displacement)
from ...ops.functions import matching_range
from ...registry import MODELS
from .base import BaseMCHead


@MODELS.register_module(name=['CorrelationMCHead', 'correlation'])
class CorrelationMCHead(BaseMCHead):
    """Feature matching by local cosine correlation; no learnable parameters.

    Both motion features are L2-normalised over channels; the cost volume covers the integer
    shifts ``[-D, D]^2`` at 1/4 resolution (channel ``(dy+D)*(2D+1) + (dx+D)``), is box-smoothed
    (``smooth x smooth``, as the reference implementation) and its argmax gives the displacement,
    which warps the full-resolution feature by ``4 * d`` (nearest upsampling of the motion).

    In training the volume is materialised (the motion loss needs it as logits); in eval mode
    the fused ``correlation_argmax`` op finds the same argmax without materialising it.

    ``reuse_warp_output`` (attribute, default False; the direct inference form of
    :func:`~mtu_toolkit.deploy.to_direct` sets it): in eval mode without autograd, warp into one
    buffer reused from call to call (a full-resolution feature, ~100 MB at 720p, whose fresh
    allocation costs page faults every frame). The result is then valid until the next warp:
    the network reads it within the frame. The argmax's scratch is then kept from call to call
    too (:func:`~mtu_toolkit.ops.correlation_argmax`'s ``workspace``). One head must not run
    from several threads at once.

    ``fast_normalize`` (attribute, default False; set by the direct inference form too): in eval
    mode without autograd, normalise into two buffers reused from call to call (fresh ones
    page-fault on every frame) by :func:`~mtu_toolkit.ops.matching_features`: on the CPU one
    compiled pass over the rows that writes them in the argmax's layout, so that the argmax
    copies nothing (much faster than ``F.normalize``'s strided reduction over channels:
    figures in ``docs/benchmarks.md``; it rounds as
    :func:`~mtu_toolkit.ops.normalize_features` does, within a few 1e-8 of ``F.normalize``).

    Args:
        motion_channels (int): channels of the motion features (2ch).
        feat_channels (int): channels of the feature to warp (ch).
        max_displacement (int): D, in 1/4-resolution pixels. Default 10 (441 shifts).
        smooth (int): box-filter size over the volume; 0 or 1 disables it. Default 5.

    Parameters: 0.
    """

    gives_cost_volume = True

    def __init__(self, motion_channels, feat_channels, max_displacement=10, smooth=5):
        super().__init__(motion_channels, feat_channels)
        try:  # (checked here, when the head is built, not at its first forward)
            self.max_displacement, self.smooth = matching_range(max_displacement, smooth)
        except ValueError as err:
            raise ComponentArgumentError(f'CorrelationMCHead: {err}') from None
        self.reuse_warp_output = False
        self.fast_normalize = False
        # the warp's output, fast_normalize's outputs (cur, prev), the argmax's scratch
        self._kept = KeptBuffers()

    @staticmethod
    def settings_args(args):
        """``args`` as checkpoints record them: the search range and the smoothing as the head
        uses them (``smooth`` None, 0 and 1 all mean none: 0). Values it would refuse are left
        as given."""
        try:
            d, box = matching_range(args.get('max_displacement'), args.get('smooth'))
        except (ValueError, TypeError):
            return args
        return dict(args, max_displacement=d, smooth=box if box > 1 else 0)

    def estimate(self, cur, prev):
        """cur, prev: (N, 2ch, h, w) -> dict(motion=int64 (N, 2, h, w) (dx, dy), [cost_volume])."""
        fast = (self.fast_normalize and not self.training
                and not (torch.is_grad_enabled() and (cur.requires_grad or prev.requires_grad)))
        if fast:
            # the normalised features straight in the argmax's layout (the same displacements)
            d = self.max_displacement
            prev_is_cur = prev is cur
            cur = matching_features(cur, d, out=self._matching_buffer(0, cur))
            prev = cur if prev_is_cur else matching_features(prev, d,
                                                             out=self._matching_buffer(1, prev))
        else:
            cur, prev = F.normalize(cur, dim=1), F.normalize(prev, dim=1)
        if not self.training:
            # (matching features need no scratch: the argmax reads their rows in place)
            keep = self.reuse_warp_output and not fast
            workspace = self._kept.workspace('argmax') if keep else None
            disp = correlation_argmax(cur, prev, self.max_displacement, self.smooth, workspace)
            return dict(motion=disp)
        volume = smooth_cost_volume(correlation(cur, prev, self.max_displacement), self.smooth)
        disp = volume_argmax_to_displacement(volume.detach(), self.max_displacement)
        return dict(motion=disp, cost_volume=volume, max_displacement=self.max_displacement)

    def warp(self, feat, motion):
        """feat (N, ch, H, W), motion int64 (N, 2, H/4, W/4) -> (N, ch, H, W), zero outside."""
        out = None
        if self.reuse_warp_output and not self.training and uses_extension(feat) \
                and not (torch.is_grad_enabled() and feat.requires_grad):
            out = self._reused_warp_buffer(feat)
        return warp_by_displacement(feat, motion, self.scale, out=out)

    def _matching_buffer(self, i, x):
        """Buffer ``i`` of :func:`~mtu_toolkit.ops.matching_features` for ``x``: dead once the
        argmax has run, so one pair serves every call."""
        shape = matching_shape(x, self.max_displacement)
        return self._kept.get(f'matching{i}', shape, x.dtype, x.device)

    def _reused_warp_buffer(self, feat):
        """The buffer for a warp of ``feat``: like it, in the layout the warp writes."""
        channels_last = (feat.device.type == 'cpu' and not feat.is_contiguous()
                         and feat.is_contiguous(memory_format=torch.channels_last))
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return self._kept.get('warp', feat.shape, feat.dtype, feat.device, fmt)

    def displacement(self, motion, frame):
        """The integer displacement, x ``scale`` in full-resolution pixels, on its 1/4 grid."""
        return motion.float() * self.scale, self.scale

    def estimate_macs(self, cur, prev):
        """(2D+1)^2 dot products of the 2ch motion features per 1/4-resolution position."""
        n, c, h, w = cur.shape
        return n * (2 * self.max_displacement + 1) ** 2 * c * h * w
