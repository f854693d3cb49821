"""Tiled inference: restore large frames tile by tile in bounded memory.

A 4K frame through the whole network holds tens of full-resolution feature maps at once. Here
the frame is cut into fixed, overlapping tiles; each tile is restored by the network as a small
video of its own (its own recurrent state across frames: restored tile, features, motion
features), and the tiles are blended in their overlaps (each tile's outer quarter of an
overlap is left out, its middle half ramps linearly). The network's working memory grows with
the tile, not the frame; what grows with the frame are the tiles' recurrent states (restored
tile, features, motion features: ~130 bytes per tile pixel for MTU2, the overlaps counted
twice) and the five input frames.

The overlap must cover what a tile's border does not see: the network's receptive field and
the matching range of the motion compensation (a displacement pointing outside a tile finds
zeros there). :func:`recommended_overlap` computes that bound for a network;
``tools/deblur_video.py --tile`` uses it by default. How far tiled frames are from untiled ones
(per pixel at the seams, and in PSNR) is measured by ``benchmarks/tiling.py``
(``docs/benchmarks.md``).

    tiled = TiledRestorer(restorer, tile=768, overlap=recommended_overlap(restorer))
    for blurry, sharp in deblur_frames(tiled, frames): ...
"""
import math

import torch
import torch.nn as nn

from ..models.backbones.mtu_net import MTUNet


def _radius(conv, scale):
    """Pixels a KxK conv reading a feature of ``scale`` pixels per position reaches."""
    return conv.kernel_size[0] // 2 * scale


def unit_radius(unit):
    """Pixels one detail network (a unit of MTUNet) reaches in each direction: its deepest
    path (encoder, residual blocks at 1/4 resolution, decoder)."""
    return (_radius(unit.enc1.conv, 1) + _radius(unit.enc2.conv, 1)
            + _radius(unit.enc3.conv, 2)
            + sum(_radius(layer.conv, 4) for block in unit.blocks for layer in block.body)
            + _radius(unit.blocks_end.conv, 4) + _radius(unit.dec1.conv, 4)
            + _radius(unit.dec2.conv, 2))


def receptive_radius(net):
    """Pixels a restored pixel of ``net`` (an MTUNet) depends on in each direction, within one
    frame: the input convolutions, then every unit's deepest path, then the output
    convolution. A net whose units were frozen (traced) keeps their radius in
    ``unit_radius`` (set by ``deploy.freeze_units``)."""
    per_unit = getattr(net, 'unit_radius', None) or unit_radius(net.units[0])
    return _radius(net.inp_prev_conv.conv, 1) + net.num_units * per_unit \
        + _radius(net.out_conv.conv, 1)


def recommended_overlap(restorer):
    """The overlap (pixels) :class:`TiledRestorer` needs for ``restorer``: the receptive field
    plus the motion compensation's reach (the matching range D at 1/4 resolution, the motion
    layer and the cost volume's smoothing), rounded up to a multiple of 4."""
    net = restorer.backbone
    if not isinstance(net, MTUNet):
        raise TypeError(f'recommended_overlap needs an MTUNet backbone, got '
                        f'{type(net).__name__}: give the overlap explicitly')
    head = net.mc_head
    reach = 4 * (getattr(head, 'max_displacement', 0) + getattr(head, 'smooth', 0) // 2)
    if net.motion_layers is not None:
        reach += 4 * (net.motion_layers[0].conv.kernel_size[0] // 2)
    overlap = receptive_radius(net) + reach
    return 4 * math.ceil(overlap / 4)


def tile_spans(length, tile, overlap):
    """``(start, size)`` of the tiles covering ``length`` pixels: as few tiles of ``tile``
    pixels as share at least ``overlap`` pixels with their neighbours, evenly spread (so the
    overlaps come out at least ``overlap``); one tile of the whole length when it fits."""
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [(round(i * step), tile) for i in range(count)]


def _ramp(size, left, right, device):
    """1-D blending weights of a tile whose ``left`` / ``right`` pixels overlap a neighbour:
    zero over the outer quarter of the overlap (the tile's border effects), a linear ramp over
    its middle half, one inside."""
    pos = torch.arange(size, device=device, dtype=torch.float32)
    w = torch.ones(size, device=device)
    for overlap, dist in ((left, pos), (right, size - 1 - pos)):
        if overlap:
            dead, ramp = overlap // 4, max(overlap - 2 * (overlap // 4), 1)
            w = torch.minimum(w, ((dist - dead + 0.5) / ramp).clamp(0, 1))
    return w


class TiledRestorer(nn.Module):
    """A restorer that runs ``restorer`` on overlapping tiles of each frame.

    Same interface as the restorer for inference (``restore_frame``, ``stream``, ``infer_clip``),
    so :func:`~mtu_toolkit.apis.deblur_frames` and ``deblur_video`` take it as they are.

    Args:
        restorer (MTURestorer): an eval-mode restorer (or a fast copy of one,
            :func:`~mtu_toolkit.deploy.optimize_for_inference`).
        tile (int): tile side in pixels (frames no larger run untiled). Multiple of 4.
        overlap (int): pixels neighbouring tiles share (blended); at least
            :func:`recommended_overlap` for frames equal to the untiled ones up to the
            network's edge effects. Multiple of 4, smaller than ``tile``.
    """

    def __init__(self, restorer, tile, overlap):
        super().__init__()
        if tile % 4 or overlap % 4 or not 0 <= overlap < tile:
            raise ValueError(f'tile ({tile}) and overlap ({overlap}) must be multiples of 4 with '
                             f'0 <= overlap < tile')
        self.restorer, self.tile, self.overlap = restorer, tile, overlap

    @property
    def infer_dtype(self):
        return self.restorer.infer_dtype

    def _layout(self, height, width):
        """``(y, x, h, w)`` of every tile of a ``height`` x ``width`` frame, row by row."""
        return [(y, x, h, w) for y, h in tile_spans(height, self.tile, self.overlap)
                for x, w in tile_spans(width, self.tile, self.overlap)]

    @torch.no_grad()
    def restore_frame(self, window, state):
        """Restore the centre of ``window`` tile by tile.

        Args:
            window (Tensor | list[Tensor]): (B, 5, 3, H, W), or its five frames (B, 3, H, W)
                (what :meth:`stream` passes: each tile's window is stacked from the frames'
                slices, never the whole frame's).
            state (list | None): the tiles' states (None at the first frame). The list is
                consumed: each tile's old state is dropped as soon as its tile is restored, so
                that the old and new states of the whole frame are never held at once.

        Returns:
            tuple: ((B, 3, H, W) float32 restored frame, list of the tiles' new states).
        """
        frames = list(window) if isinstance(window, (list, tuple)) else window.unbind(1)
        (b, _, h, w), device = frames[0].shape, frames[0].device
        layout = self._layout(h, w)
        states = state if state is not None else [None] * len(layout)
        out = torch.zeros(b, 3, h, w, dtype=torch.float32, device=device)
        weight = torch.zeros(1, 1, h, w, dtype=torch.float32, device=device)
        for i, (y, x, th, tw) in enumerate(layout):
            tile_window = torch.stack([f[..., y:y + th, x:x + tw] for f in frames], 1)
            tile_state, states[i] = states[i], None
            restored, states[i] = self.restorer.restore_frame(tile_window, tile_state)
            del tile_state
            top, left = (self.overlap if y > 0 else 0), (self.overlap if x > 0 else 0)
            bottom = self.overlap if y + th < h else 0
            right = self.overlap if x + tw < w else 0
            ramp = (_ramp(th, top, bottom, device)[:, None]
                    * _ramp(tw, left, right, device)[None, :])
            out[..., y:y + th, x:x + tw] += restored.float() * ramp
            weight[..., y:y + th, x:x + tw] += ramp
        return out.div_(weight), states

    def stream(self):
        """A :class:`~mtu_toolkit.models.restorers.mtu_restorer.FrameStream` that hands this
        restorer the window's frames unstacked (a 4K window stacked is 0.5 GB)."""
        from ..models.restorers.mtu_restorer import FrameStream
        return FrameStream(self, stack=False)

    def infer_clip(self, frames):
        """Restore a whole clip (T, 3, H, W), as :meth:`MTURestorer.infer_clip`."""
        single = frames.dim() == 4
        frames = frames.unsqueeze(0) if single else frames
        stream = self.stream()
        outs = [o for t in range(frames.shape[1]) for o in stream.push(frames[:, t])]
        outs += stream.flush()
        out = torch.stack(outs, 1)
        return out[0] if single else out
