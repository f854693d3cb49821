"""The stacked multi-task-unit network (paper Sec. 3, exact shapes in MTU_NETWORK.md)."""
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn as nn

from ...registry import MODELS
from ..layers import ResidualBlock, conv
from .detail_net import DetailNet


@dataclass
class MTUState:
    """Recurrent state carried from frame t-1 to frame t (all detached).

    Attributes:
        restored (Tensor): R_{t-1}, (N, 3, H, W).
        feat (Tensor): post_f_prev, the last unit's detail feature of t-1, (N, ch, H, W).
        motion (list[Tensor]): motion features of t-1, (N, 2ch, H/4, W/4), one per matching unit
            (only the first unit's with feature-matching skipping).
    """
    restored: torch.Tensor
    feat: torch.Tensor
    motion: List[Optional[torch.Tensor]]

    def detach(self):
        return MTUState(self.restored.detach(), self.feat.detach(),
                        [m if m is None else m.detach() for m in self.motion])


def motion_feature(feat, base, motion_layer, sum_out=None):
    """The motion feature (N, 2ch, H/4, W/4) of a unit's feature (N, ch, H, W): the motion
    layer of ``feat + base`` (``base`` None: no structure injection; the sum written into
    ``sum_out`` when given), or without a layer the 4x4 average of it repeated to 2ch
    channels."""
    x = feat if base is None else torch.add(feat, base, out=sum_out)
    if motion_layer is not None:
        return motion_layer(x)
    return nn.functional.avg_pool2d(x, 4).repeat(1, 2, 1, 1)


def restore_output(layer, x, frame, residual):
    """A deblur layer's output, added to the blurry frame I_t when learning residuals."""
    res = layer(x)
    return res + frame if residual else res


@MODELS.register_module()
class MTUNet(nn.Module):
    """N stacked multi-task units with recurrent motion compensation.

    Args:
        num_units (int): N, stacked MTUs. Default 2.
        channels (int): base channels ``ch``. Default 26 (48 for the L variant).
        num_blocks (int): residual blocks per unit. Default 8 (6 for the L variant).
        mc_head (dict): config of the MC head (``BaseMCHead`` interface); built with
            ``motion_channels=2*ch`` and ``feat_channels=ch``. Default the paper's correlation
            head with D=10 and 5x5 smoothing.
        match_every_unit (bool): compute matching in every unit (Table 6 "w/o skipping")
            instead of only in the first one. Default False.
        structure_injection (bool): add the structural feature f_t^b to the detail feature
            before the motion layer (Table 8 "addition"). Default True.
        motion_layer (bool): 5x5 stride-4 conv ch -> 2ch on the (injected) feature; without it
            the motion feature is the 4x4 average of the feature, repeated to 2ch (Table 8).
        residual (bool): outputs are residuals added to I_t (Table 1). Default True.
        aux_outputs (bool): build the auxiliary deblur layers of units 1..N-1 (training only).
        zero_init_output (bool): start the deblur layers at zero, so that with residual
            learning the untrained network is the identity (useful for short trainings).
        kaiming_init (bool): He-normal initialisation (ReLU gain) of the detail networks' and
            input convolutions, with each residual block's last conv scaled by 0.1 (as EDSR /
            BasicSR do). PyTorch's default init shrinks the signal through the deep U-Nets,
            which slows the start of training; short CPU trainings (the demo) learn several
            times faster with this. Default False (the reference's default init).

    Shapes: ``forward`` takes the window (N, 5, 3, H, W) = I_{t-2..t+2} with H, W multiples of
    4 and the state of t-1 (None at a clip's first frame); see :meth:`forward`.
    """

    def __init__(self, num_units=2, channels=26, num_blocks=8,
                 mc_head=dict(type='CorrelationMCHead', max_displacement=10, smooth=5),
                 match_every_unit=False, structure_injection=True, motion_layer=True,
                 residual=True, aux_outputs=True, zero_init_output=False, kaiming_init=False):
        super().__init__()
        ch = channels
        self.num_units = num_units
        self.channels = ch
        self.match_every_unit = match_every_unit
        self.structure_injection = structure_injection
        self.residual = residual
        # inputs
        self.base_conv = conv(3, ch)
        self.inp_prev_conv = conv(15, ch)
        # detail networks
        self.units = nn.ModuleList(DetailNet(ch, num_blocks) for _ in range(num_units))
        # motion compensation
        self.mc_head = MODELS.build(
            dict(mc_head, motion_channels=2 * ch, feat_channels=ch))
        self.num_matching = num_units if match_every_unit else 1
        if self.mc_head.needs_motion_features and motion_layer:
            self.motion_layers = nn.ModuleList(
                conv(ch, 2 * ch, 5, stride=4, padding=1) for _ in range(self.num_matching))
        else:
            self.motion_layers = None
        # deblur layers
        self.out_conv = conv(ch, 3, relu=False)
        self.aux_convs = nn.ModuleList(
            conv(2 * ch, 3, relu=False)
            for _ in range(num_units - 1)) if aux_outputs else None
        if kaiming_init:
            self._kaiming_init(residual_scale=0.1)
        if zero_init_output:
            for layer in [self.out_conv] + list(self.aux_convs or []):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def _kaiming_init(self, residual_scale):
        # the MC head keeps its own init (e.g. FAN's identity filters), the deblur layers theirs
        parts = nn.ModuleList([self.base_conv, self.inp_prev_conv, self.units])
        if self.motion_layers is not None:
            parts.append(self.motion_layers)
        for m in parts.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                # a transposed conv's weight is (in, out, k, k): torch's "fan_out" is its fan-in
                mode = 'fan_out' if isinstance(m, nn.ConvTranspose2d) else 'fan_in'
                nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity='relu')
                nn.init.zeros_(m.bias)
        for m in parts.modules():  # after the convs' init, which would undo the scaling
            if isinstance(m, ResidualBlock):
                m.body[-1][0].weight.data.mul_(residual_scale)

    def inference_parameters(self):
        """Parameters of the inference network (without the auxiliary deblur layers)."""
        aux = {id(p) for p in self.aux_convs.parameters()} if self.aux_convs else set()
        return [p for p in self.parameters() if id(p) not in aux]

    def _motion_feature(self, k, feat, base):
        """Structure-injected motion feature of matching unit k: (N, 2ch, H/4, W/4)."""
        layer = self.motion_layers[k] if self.motion_layers is not None else None
        return motion_feature(feat, base if self.structure_injection else None, layer)

    def forward(self, window, state=None, with_aux=None):
        """Restore the centre frame of ``window``.

        Args:
            window (Tensor): (N, 5, 3, H, W) blurry frames I_{t-2}, I_{t-1}, I_t, I_{t+1},
                I_{t+2}; H and W multiples of 4.
            state (MTUState | None): state of t-1; None at the first frame of a clip.
            with_aux (bool | None): also compute the auxiliary outputs (default: in training).

        Returns:
            tuple: ``(outputs, state)`` where ``outputs`` is a dict with ``out`` (N, 3, H, W)
            the final restored frame, ``aux_outs`` the auxiliary restored frames of units
            1..N-1 (training), ``mc`` the MC heads' aux dicts of the matching units (cost
            volumes for the motion loss), and ``state`` is the (non-detached) new state.
        """
        if with_aux is None:
            with_aux = self.training and self.aux_convs is not None
        frame = window[:, 2]
        prev_restored = frame if state is None else state.restored
        base = self.base_conv(frame)
        inp_prev = self.inp_prev_conv(torch.cat(
            (window[:, 0], window[:, 1], prev_restored, window[:, 3], window[:, 4]), 1))

        x = torch.cat((base, inp_prev), 1)
        motion, mc_aux, motion_feats, aux_outs = None, [], [], []
        for n, unit in enumerate(self.units):
            feat = unit(x)
            if n < self.num_matching:
                cur = prev = None
                if self.mc_head.needs_motion_features:
                    cur = self._motion_feature(n, feat, base)
                    prev = cur if state is None else state.motion[n]
                motion_feats.append(cur)
                aux = self.mc_head.estimate(cur, prev)
                motion = aux['motion']
                mc_aux.append(aux)
            if n < self.num_units - 1:  # the last unit's feature goes to the output alone
                # at a clip's first frame the "previous" feature is the current one (reference)
                feat_prev = feat.detach() if state is None else state.feat
                warped = self.mc_head.warp(feat_prev, motion)
                if with_aux:
                    aux_outs.append(self._restore(self.aux_convs[n], torch.cat((feat, warped), 1),
                                                  frame))
                x = torch.cat((feat, warped), 1)
        out = self._restore(self.out_conv, feat, frame)
        new_state = MTUState(out, feat, motion_feats)
        return dict(out=out, aux_outs=aux_outs, mc=mc_aux), new_state

    def _restore(self, layer, x, frame):
        return restore_output(layer, x, frame, self.residual)
