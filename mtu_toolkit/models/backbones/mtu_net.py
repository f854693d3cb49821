"""The stacked multi-task-unit network (paper Sec. 3; every layer in ``docs/network.md``)."""
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn as nn
from torch.profiler import record_function

from ...checked_registry import ComponentArgumentError
from ...registry import MODELS
from ..layers import ResidualBlock, conv
from ..window import CENTER, recurrent_inputs
from .detail_net import DetailNet

#: the name of the profiler ranges around the motion compensation (motion layer, matching,
#: warp) of every frame; tools time the MC share of a frame with it (``torch.profiler``)
MC_RANGE = 'mtu::motion_compensation'

#: the network's weight initialisations (see :class:`MTUNet`)
WEIGHT_INITS = ('pytorch', 'normal', 'kaiming')


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
        weight_init (str): initialisation of the network's convolutions (the MC head keeps its
            own): 'pytorch' (PyTorch's default), 'normal' (every conv and transposed conv
            weight from N(0, ``init_std``), biases 0: the reference implementation's) or
            'kaiming' (He-normal with the ReLU gain, biases 0, each residual block's last conv
            scaled by 0.1 as EDSR / BasicSR do; PyTorch's default shrinks the signal through
            the deep U-Nets, and short CPU trainings such as the demo learn several times
            faster with this). Default 'pytorch'.
        init_std (float): standard deviation of the 'normal' init. Default 0.03.
        kaiming_init (bool): same as ``weight_init='kaiming'`` (kept for older configs).
        zero_init_output (bool): start the deblur layers at zero, so that with residual
            learning the untrained network is the identity (useful for short trainings).

    Shapes: ``forward`` takes the window (N, 5, 3, H, W) = I_{t-2..t+2} with H, W multiples of
    4 and the state of t-1 (None at a clip's first frame); see :meth:`forward`.
    """

    #: arguments that decide only how training starts, not what loaded weights compute (not
    #: part of :func:`~mtu_toolkit.models.network_settings.network_settings`)
    INIT_ARGS = ('aux_outputs', 'weight_init', 'init_std', 'kaiming_init', 'zero_init_output')

    @staticmethod
    def inert_args(args):
        """The arguments that change nothing given the others (a dict of this class's
        arguments): the structure injection and the motion layer for a head that takes no
        motion features, matching in every unit for one unit."""
        from ..network_settings import registered_class
        head = args.get('mc_head')
        cls = registered_class(head.get('type')) if isinstance(head, dict) else None
        inert = []
        if cls is not None and not getattr(cls, 'needs_motion_features', True):
            inert += ['structure_injection', 'motion_layer']
        if args.get('num_units') == 1:
            inert.append('match_every_unit')
        return inert

    def __init__(self, num_units=2, channels=26, num_blocks=8,
                 mc_head=dict(type='CorrelationMCHead', max_displacement=10, smooth=5),
                 match_every_unit=False, structure_injection=True, motion_layer=True,
                 residual=True, aux_outputs=True, weight_init='pytorch', init_std=0.03,
                 kaiming_init=False, zero_init_output=False):
        super().__init__()
        for name, value, low in (('num_units', num_units, 1), ('channels', channels, 1),
                                 ('num_blocks', num_blocks, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ComponentArgumentError(f'MTUNet: {name} must be an integer >= {low}, '
                                             f'got {value!r}')
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
        self.init_weights('kaiming' if kaiming_init else weight_init, init_std)
        if zero_init_output:
            for layer in [self.out_conv] + list(self.aux_convs or []):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def own_layers(self, deblur_layers=True):
        """The network's own modules, without the MC head (which keeps its own init), and
        without the output and auxiliary deblur layers if ``deblur_layers`` is False."""
        parts = [self.base_conv, self.inp_prev_conv, self.units]
        parts += [self.motion_layers] if self.motion_layers is not None else []
        if deblur_layers:
            parts += [self.out_conv] + ([self.aux_convs] if self.aux_convs is not None else [])
        return nn.ModuleList(parts)

    def inference_layers(self):
        """The network's own modules that inference runs (no MC head, no auxiliary layers)."""
        parts = [self.base_conv, self.inp_prev_conv, self.units, self.out_conv]
        if self.motion_layers is not None:
            parts.append(self.motion_layers)
        return nn.ModuleList(parts)

    def init_weights(self, kind='pytorch', std=0.03):
        """(Re-)initialise the network's convolutions (see the class doc's ``weight_init``)."""
        if kind not in WEIGHT_INITS:
            raise ComponentArgumentError(f'MTUNet: weight_init must be one of {WEIGHT_INITS}, '
                                         f'got {kind!r}')
        if kind == 'pytorch':
            return
        # He init leaves the deblur layers at PyTorch's default (small outputs at the start)
        layers = self.own_layers(deblur_layers=kind == 'normal')
        for m in layers.modules():
            if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            if kind == 'normal':
                nn.init.normal_(m.weight, 0.0, std)
            else:
                # a transposed conv's weight is (in, out, k, k): torch's "fan_out" is its fan-in
                mode = 'fan_out' if isinstance(m, nn.ConvTranspose2d) else 'fan_in'
                nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity='relu')
            nn.init.zeros_(m.bias)
        if kind == 'kaiming':  # after the convs' init, which would undo the scaling
            for m in layers.modules():
                if isinstance(m, ResidualBlock):
                    m.body[-1].conv.weight.data.mul_(0.1)

    def inference_parameters(self):
        """Parameters of the inference network (without the auxiliary deblur layers)."""
        aux = {id(p) for p in self.aux_convs.parameters()} if self.aux_convs else set()
        return [p for p in self.parameters() if id(p) not in aux]

    def parameter_groups(self):
        """The parameters each optimiser of the two-optimiser recipe trains (the reference
        implementation's split): ``deblur`` everything but the motion layers (the argmax blocks
        the deblurring gradient from them); ``motion`` everything but the last unit, the
        output layer and the auxiliary deblur layers (the motion loss does not reach them)."""
        def ids(*modules):
            return {id(p) for m in modules if m is not None for p in m.parameters()}
        not_deblur = ids(self.motion_layers)
        not_motion = ids(self.units[-1], self.out_conv, self.aux_convs)
        params = list(self.parameters())
        return dict(deblur=[p for p in params if id(p) not in not_deblur],
                    motion=[p for p in params if id(p) not in not_motion])

    def training_only_prefixes(self):
        """State-dict key prefixes of layers that only training uses (the auxiliary deblur
        layers): a checkpoint without them still holds the whole inference network."""
        return ('aux_convs.',) if self.aux_convs is not None else ()

    def transient_layers(self):
        """Layers whose output is dead before the next frame starts (inference forms may
        write it into the same buffer every frame): the input convolutions, every unit's
        first convolution, and every unit's output but the last unit's (the recurrent state).
        """
        layers = [self.base_conv, self.inp_prev_conv] + [unit.enc1 for unit in self.units]
        return layers + [unit.dec2 for unit in self.units[:-1]]

    def motion_feature(self, k, feat, base):
        """The motion feature (N, 2ch, H/4, W/4) of matching unit ``k`` from its feature
        ``feat`` (N, ch, H, W): the motion layer of ``feat + base`` (the structural feature,
        with structure injection), or without a motion layer the 4x4 average repeated to 2ch.
        """
        inputs = (feat, base) if self.structure_injection else (feat,)
        if self.motion_layers is not None:
            return self.motion_layers[k](*inputs, sum_inputs=True)
        x = feat + base if self.structure_injection else feat
        return nn.functional.avg_pool2d(x, 4).repeat(1, 2, 1, 1)

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
        frames = window.contiguous().unbind(1)
        frame = frames[CENTER]
        prev_restored = frame if state is None else state.restored
        base = self.base_conv(frame)
        inputs = (base, self.inp_prev_conv(*recurrent_inputs(frames, prev_restored)))
        motion, mc_aux, motion_feats, aux_outs = None, [], [], []
        warped = warped_from = None
        for n, unit in enumerate(self.units):
            feat = unit(*inputs)
            if n < self.num_matching:
                with record_function(MC_RANGE):
                    cur = prev = None
                    if self.mc_head.needs_motion_features:
                        cur = self.motion_feature(n, feat, base)
                        prev = cur if state is None else state.motion[n]
                    aux = self.mc_head.estimate(cur, prev)
                motion = aux['motion']
                motion_feats.append(cur)
                mc_aux.append(aux)
            if n < self.num_units - 1:  # the last unit's feature goes to the output alone
                # at a clip's first frame the "previous" feature is the current one (as the
                # reference implementation, not detached there)
                feat_prev = feat if state is None else state.feat
                # with matching skipped after the first unit, every unit warps the same
                # feature by the same motion: warp it once
                if warped_from is None or warped_from[0] is not feat_prev \
                        or warped_from[1] is not motion:
                    with record_function(MC_RANGE):
                        warped = self.mc_head.warp(feat_prev, motion)
                    warped_from = (feat_prev, motion)
                if with_aux:
                    aux_outs.append(self._restore(self.aux_convs[n], frame, feat, warped))
                inputs = (feat, warped)
        out = self._restore(self.out_conv, frame, feat)
        new_state = MTUState(out, feat, motion_feats)
        return dict(out=out, aux_outs=aux_outs, mc=mc_aux), new_state

    def _restore(self, layer, frame, *inputs):
        """A deblur layer's output, added to the blurry frame I_t when learning residuals."""
        return layer(*inputs, residual=frame if self.residual else None)
