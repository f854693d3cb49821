"""The MTU network rearranged for CPU inference: no full-resolution concatenation.

:class:`~mtu_toolkit.models.MTUNet` concatenates two ``ch``-channel full-resolution tensors in
front of every detail network (``base | inp_prev`` for the first, ``feat | warped`` for the
others): at 1280x720 each ``cat`` writes and reads ~190 MB for no arithmetic. This form gives
the same frames (to float rounding) without them: every unit's first convolution is split by
input channels, ``ReLU(W_a * a + W_b * b + bias)`` with ``(a, b) = (base, inp_prev)`` for the
first unit and ``(feat, warped)`` for the others, which oneDNN runs as a convolution whose
post-op adds the other's output.

Each unit, with the convolutions around it (input, motion layer, output), is one stage:
:class:`Stage` (PyTorch layers: the graph :func:`optimize_for_inference` compiles) or
:class:`DirectStage` (the toolkit's direct convolution kernels, which also read the window's
frames in place and fuse every residual add). Motion compensation (the MC head's ``estimate``
and ``warp``: the compiled extension's ops) runs between the stages.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.backbones.mtu_net import MTUState, motion_feature, restore_output
from ..ops.conv_direct import DirectConv2d


def stage_flags(net, n):
    """What unit ``n`` of ``net`` does around its detail network."""
    return dict(first=n == 0, last=n == net.num_units - 1,
                matching=n < net.num_matching and net.mc_head.needs_motion_features,
                keep_base=n == 0 and net.num_matching > 1)


class Stage(nn.Module):
    """Unit ``n`` of ``net`` with the convolutions around it.

    forward(a, b, frame, base=None) -> (feat, motion_feature | None, out | None, base | None):
    ``a, b`` are the window (N, 5, 3, H, W) and R_{t-1} (N, 3, H, W) for the first unit, the
    previous unit's feature and the warped feature (N, ch, H, W) for the others; ``frame`` is
    I_t (N, 3, H, W) and ``base`` the structural feature f^b_t (N, ch, H, W), which the first
    unit returns when later units match. ``motion_feature`` (N, 2ch, H/4, W/4) is returned by
    matching units, ``out`` (N, 3, H, W) by the last.
    """

    def __init__(self, net, n):
        super().__init__()
        self.flags = stage_flags(net, n)
        unit = net.units[n]
        self.base_conv = net.base_conv if n == 0 else None
        self.inp_prev_conv = net.inp_prev_conv if n == 0 else None
        weight = unit.enc1[0].weight.detach()
        self.register_buffer('w_a', weight[:, :net.channels].clone())
        self.register_buffer('w_b', weight[:, net.channels:].clone())
        self.register_buffer('bias', unit.enc1[0].bias.detach().clone())
        self.unit = unit
        self.structure_injection = net.structure_injection
        self.motion_layer = (net.motion_layers[n] if self.flags['matching']
                             and net.motion_layers is not None else None)
        self.out_conv = net.out_conv if self.flags['last'] else None
        self.residual = net.residual

    def forward(self, a, b, frame, base=None):
        flags = self.flags
        if flags['first']:
            window, prev_restored = a, b
            base = a = self.base_conv(frame)
            b = self.inp_prev_conv(torch.cat((window[:, 0], window[:, 1], prev_restored,
                                              window[:, 3], window[:, 4]), 1))
        pad = self.unit.enc1[0].padding
        f1 = F.relu(F.conv2d(a, self.w_a, self.bias, padding=pad)
                    + F.conv2d(b, self.w_b, None, padding=pad))
        feat = self.unit.after_enc1(f1)
        motion = out = None
        if flags['matching']:
            motion = motion_feature(feat, base if self.structure_injection else None,
                                    self.motion_layer)
        if flags['last']:
            out = restore_output(self.out_conv, feat, frame, self.residual)
        return feat, motion, out, (base if flags['keep_base'] else None)


class DirectStage(nn.Module):
    """:class:`Stage` on the direct convolution kernels (:class:`~mtu_toolkit.ops.DirectConv2d`),
    NCHW: every convolution reads its inputs in place (the five frames of the window, the two
    halves of a unit's input) and adds its residual in the same pass (the residual blocks,
    ``blocks_end + f3``, the decoders' skip connections, the output's ``+ I_t``). Same
    signature and results as :class:`Stage`.

    The full-resolution results that die within a frame are written into the same buffers
    every frame, so one model must not run frames from several threads at once.

    ``winograd`` is :class:`~mtu_toolkit.ops.DirectConv2d`'s (by default the wide stride-1
    layers run Winograd F(4x4, KxK)).
    """

    def __init__(self, net, n, winograd='auto'):
        super().__init__()
        self.flags = stage_flags(net, n)
        unit = net.units[n]

        def direct(layer, reuse=False):  # conv(..., relu=True) is Sequential(conv, ReLU)
            if isinstance(layer, nn.Sequential):
                return DirectConv2d(layer[0], True, reuse_output=reuse, winograd=winograd)
            return DirectConv2d(layer, False, reuse_output=reuse, winograd=winograd)

        # the full-resolution results that die within the frame are written into the same
        # buffers every frame: a fresh 100 MB tensor costs ~15 ms of page faults on 2 cores
        self.base_conv = direct(net.base_conv, reuse=True) if n == 0 else None
        self.inp_prev_conv = direct(net.inp_prev_conv, reuse=True) if n == 0 else None
        self.enc1 = direct(unit.enc1, reuse=True)
        self.enc2, self.enc3 = direct(unit.enc2), direct(unit.enc3)
        self.blocks = nn.ModuleList(nn.ModuleList(direct(layer) for layer in block.body)
                                    for block in unit.blocks)
        self.blocks_end = direct(unit.blocks_end)
        # a unit's output dies within the frame except the last unit's (the recurrent state)
        self.dec1 = direct(unit.dec1)
        self.dec2 = direct(unit.dec2, reuse=not self.flags['last'])
        self.structure_injection = net.structure_injection
        self.motion_layer = (direct(net.motion_layers[n]) if self.flags['matching']
                             and net.motion_layers is not None else None)
        self.out_conv = direct(net.out_conv) if self.flags['last'] else None
        self.residual = net.residual
        self._sum = None  # feat + base, the motion layer's input

    def forward(self, a, b, frame, base=None):
        flags = self.flags
        if flags['first']:
            # one copy of a strided window (e.g. frames decoded as HWC), not one per use
            window, prev_restored = a.contiguous(), b
            frame = window[:, 2]
            base = a = self.base_conv([frame])
            b = self.inp_prev_conv([window[:, 0], window[:, 1], prev_restored, window[:, 3],
                                    window[:, 4]])
        f1 = self.enc1([a, b])
        f2 = self.enc2([f1])
        f3 = x = self.enc3([f2])
        for first_conv, second_conv in self.blocks:  # x + ReLU(conv(ReLU(conv(x))))
            x = second_conv([first_conv([x])], residual=x)
        x = self.blocks_end([x], residual=f3)
        feat = self.dec2([self.dec1([x], residual=f2)], residual=f1)
        motion = out = None
        if flags['matching']:
            layer = self.motion_layer
            if self._sum is None or self._sum.shape != feat.shape:
                self._sum = torch.empty_like(feat)
            motion = motion_feature(feat, base if self.structure_injection else None,
                                    None if layer is None else lambda x: layer([x]), self._sum)
        if flags['last']:
            out = self.out_conv([feat], residual=frame if self.residual else None)
        return feat, motion, out, (base if flags['keep_base'] else None)


class FusedMTUNet(nn.Module):
    """Inference-only MTUNet (same parameters, same frames) without full-resolution ``cat``.

    Args:
        net (MTUNet): the network; its modules are shared, except the units' first
            convolutions, whose two halves are copied when this is built (build it after
            loading the weights).
        direct (bool): build :class:`DirectStage` s (the direct convolution kernels) instead of
            :class:`Stage` s.
        winograd (bool | str | int): the direct stages' choice of Winograd kernels ('auto',
            True, False, 2 or 4; see :class:`~mtu_toolkit.ops.DirectConv2d`).

    ``forward(window, state=None, with_aux=False)`` has MTUNet's signature and results
    (``outputs['out']``, ``mc``, the new state); no auxiliary outputs.
    """

    def __init__(self, net, direct=False, winograd='auto'):
        super().__init__()
        self.mc_head = net.mc_head
        self.num_units, self.num_matching = net.num_units, net.num_matching
        self.stages = nn.ModuleList(DirectStage(net, n, winograd) if direct else Stage(net, n)
                                    for n in range(net.num_units))

    @property
    def motion_layers(self):
        """The direct stages' motion layers (timed as motion compensation by the benchmark);
        None with :class:`Stage` s, whose motion layers run inside the compiled graphs."""
        if not all(isinstance(s, DirectStage) for s in self.stages):
            return None
        return [s.motion_layer for s in self.stages if s.motion_layer is not None] or None

    def forward(self, window, state=None, with_aux=False):
        if with_aux:
            raise ValueError('FusedMTUNet is for inference: it has no auxiliary outputs')
        frame = window[:, 2]
        a, b = window, frame if state is None else state.restored
        base, warped, motion = None, None, None
        warped_from = None  # the (feature, motion) that `warped` was warped from
        mc_aux, motion_feats = [], []
        for n, stage in enumerate(self.stages):
            feat, cur, out, kept = stage(a, b, frame, base)
            base = kept if n == 0 else base
            if n < self.num_matching:
                prev = cur if state is None or cur is None else state.motion[n]
                motion_feats.append(cur)
                aux = self.mc_head.estimate(cur, prev)
                motion = aux['motion']
                mc_aux.append(aux)
            if n < self.num_units - 1:
                feat_prev = feat if state is None else state.feat
                # with matching skipped after the first units, every unit warps the previous
                # frame's feature by the same displacement: warp it once
                if (warped_from is None or warped_from[0] is not feat_prev
                        or warped_from[1] is not motion):
                    warped = self.mc_head.warp(feat_prev, motion)
                    warped_from = (feat_prev, motion)
                a, b = feat, warped
        return dict(out=out, aux_outs=[], mc=mc_aux), MTUState(out, feat, motion_feats)
