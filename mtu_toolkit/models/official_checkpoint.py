"""The paper authors' released checkpoints: detect them, read their variant, convert them.

The released files (``MTU2_DVD.pytorch``, ``MTU10_L_GoPro.pytorch``, ...) hold the
``state_dict()`` of the authors' training wrapper: a plain dict of tensors whose keys start with
``Network.`` (after a ``module.`` when it was saved from a (Distributed)DataParallel wrapper).
Layer for layer their network is :class:`~mtu_toolkit.models.backbones.MTUNet`; the names map as

====================================  =============================================
released (after ``Network.``)         this toolkit (after ``backbone.``)
====================================  =============================================
``base_conv.0``                       ``base_conv.0``
``inp_prev_conv.0``                   ``inp_prev_conv.0``
``HGs.<i>.enc{1,2,3}.0``              ``units.<i>.enc{1,2,3}.0``
``HGs.<i>.RBs.<j>.0`` / ``.2``        ``units.<i>.blocks.<j>.body.0.0`` / ``body.1.0``
``HGs.<i>.RB_end.0``                  ``units.<i>.blocks_end.0``
``HGs.<i>.dec{1,2}.0``                ``units.<i>.dec{1,2}.0``
``motion_layer.<k>.0``                ``motion_layers.<k>.0``
``out``                               ``out_conv``
``deblur_layer.<k>`` (training only)  ``aux_convs.<k>``
====================================  =============================================

each with ``weight`` and ``bias``, tensors unchanged (transposed convolutions are
(in, out, 4, 4) in both). Files of the test-time network have no ``deblur_layer``; inference
never uses those layers.

The variant is read from the tensors, never from the file name: ``ch`` = the size most of
``base_conv``, ``inp_prev_conv``, ``out`` and the first unit's ``enc2`` agree on (so a corrupt
``base_conv`` is named as such), units = the ``HGs`` entries, residual blocks = the ``RBs`` of
each unit, matching layers = the ``motion_layer`` entries (1: feature-matching skipping, only
the first unit matches, as in every released model; one per unit: matching in every unit).
Every tensor is then checked against the shapes of that variant's MTUNet: a key that maps to
nothing, a missing tensor or a wrong shape stops the conversion with a
:class:`OfficialCheckpointError` naming it.

What the weights cannot show: the dataset (DVD / GoPro / REDS give the same shapes) and the
correlation's max displacement D (no parameters; 10 in every released model, as in our configs).
:func:`fitting_configs` lists the configs of ``configs/mtu/`` whose network is the released one.
"""
import functools
import glob
import os.path as osp
import re
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass

import torch

from ..wording import plural
from .backbones import MTUNet
from .mc_heads import CorrelationMCHead  # noqa: F401 - registers the MC heads MTUNet builds
from .network_settings import network_settings

#: key prefix of the released network inside its training wrapper
NETWORK_PREFIX = 'Network.'
#: key prefix of the model wrapped by (Distributed)DataParallel
WRAPPER_PREFIX = 'module.'
#: key prefix of the backbone in this toolkit's restorer
BACKBONE_PREFIX = 'backbone.'

#: the released network's settings that its weights cannot show (the reference's correlation
#: matching: D = 10, 5x5 smoothing of the volume; structure injection, motion layer, residual)
REFERENCE_SETTINGS = dict(max_displacement=10, smooth=5, structure_injection=True,
                          motion_layer=True, residual=True)

# released name (after 'Network.') -> ours (after 'backbone.'), for names ending in .weight/.bias
_RULES = [
    (r'base_conv\.0', r'base_conv.0'),
    (r'inp_prev_conv\.0', r'inp_prev_conv.0'),
    (r'HGs\.(\d+)\.(enc1|enc2|enc3|dec1|dec2)\.0', r'units.\1.\2.0'),
    (r'HGs\.(\d+)\.RBs\.(\d+)\.0', r'units.\1.blocks.\2.body.0.0'),
    (r'HGs\.(\d+)\.RBs\.(\d+)\.2', r'units.\1.blocks.\2.body.1.0'),
    (r'HGs\.(\d+)\.RB_end\.0', r'units.\1.blocks_end.0'),
    (r'motion_layer\.(\d+)\.0', r'motion_layers.\1.0'),
    (r'out', r'out_conv'),
    (r'deblur_layer\.(\d+)', r'aux_convs.\1'),
]
_RULES = [(re.compile(rf'^{src}\.(weight|bias)$'), rf'{dst}.\g<{src.count("(") + 1}>')
          for src, dst in _RULES]

#: the named variants of the paper: (units, ch, residual blocks) -> name
PAPER_VARIANTS = {(1, 26, 8): 'MTU1', (2, 26, 8): 'MTU2', (4, 26, 8): 'MTU4',
                  (10, 26, 8): 'MTU10', (10, 48, 6): 'MTU10_L'}


class OfficialCheckpointError(ValueError):
    """A released-format state dict that cannot be converted; the message names the tensor."""


@dataclass
class OfficialArchitecture:
    """The variant of a released file, read from its tensors' shapes.

    Attributes:
        num_units (int): stacked units (``HGs``).
        channels (int): base channels ``ch``.
        num_blocks (int): residual blocks per unit.
        num_matching (int): motion layers: 1 (feature-matching skipping) or ``num_units``.
        deblur_layers (bool): the training-only auxiliary deblur layers are in the file.
    """
    num_units: int
    channels: int
    num_blocks: int
    num_matching: int
    deblur_layers: bool

    @property
    def match_every_unit(self):
        return self.num_units > 1 and self.num_matching == self.num_units

    @property
    def variant(self):
        """'MTU2', 'MTU10_L', ... for the paper's variants, None for another size."""
        if self.match_every_unit:
            return None
        return PAPER_VARIANTS.get((self.num_units, self.channels, self.num_blocks))

    def backbone_cfg(self):
        """The MTUNet config dict of this network (with the reference's invisible settings)."""
        s = REFERENCE_SETTINGS
        return dict(type='MTUNet', num_units=self.num_units, channels=self.channels,
                    num_blocks=self.num_blocks,
                    mc_head=dict(type='CorrelationMCHead',
                                 max_displacement=s['max_displacement'], smooth=s['smooth']),
                    match_every_unit=self.match_every_unit,
                    structure_injection=s['structure_injection'],
                    motion_layer=s['motion_layer'], residual=s['residual'])

    def network_settings(self):
        """The released network's :func:`~mtu_toolkit.models.network_settings.network_settings`
        (the reference's settings, which the weights cannot show)."""
        return network_settings(dict(backbone=self.backbone_cfg()))

    def describe(self):
        """One phrase, e.g. 'MTU2: 2 units, ch 26, 8 residual blocks, matching in the first
        unit only, with the training-only deblur layers'."""
        name = f'{self.variant}: ' if self.variant else ''
        matching = ('matching in every unit' if self.match_every_unit
                    else 'matching in the first unit only')
        aux = 'with' if self.deblur_layers else 'without'
        return (f'{name}{plural(self.num_units, "unit")}, ch {self.channels}, '
                f'{plural(self.num_blocks, "residual block")}, {matching}, {aux} the '
                'training-only deblur layers')


@dataclass
class OfficialConversion:
    """The result of :func:`convert_official_state_dict`.

    Attributes:
        state_dict (OrderedDict): this toolkit's restorer weights (``backbone.*``).
        arch (OfficialArchitecture): the variant read from the tensors.
        configs (list[str]): the configs that fit (see :func:`fitting_configs`).
        wrapped (bool): the keys carried the ``module.`` prefix of a parallel wrapper.
    """
    state_dict: OrderedDict
    arch: OfficialArchitecture
    configs: list
    wrapped: bool

    def meta(self, source):
        """What a converted checkpoint records in its ``meta`` (plain types only)."""
        return dict(converted_from=str(source), source_format='official MTU release',
                    architecture=asdict(self.arch), variant=self.arch.variant,
                    fitting_configs=list(self.configs),
                    network_settings=self.arch.network_settings())

    def summary(self, source):
        """One line: what was read and which configs fit."""
        fits = (', '.join(self.configs) if self.configs else
                f'none in configs/mtu/; use model.backbone={self.arch.backbone_cfg()}')
        return (f'{source}: a released checkpoint of the paper\'s authors '
                f'({self.arch.describe()}), converted to this toolkit\'s layout; '
                f'configs that fit: {fits}')


def _network_keys(state_dict):
    """The keys after 'module.' / 'Network.' as {short: full} and whether 'module.' was there,
    or None when ``state_dict`` is not of the released network."""
    if not isinstance(state_dict, dict) or not state_dict:
        return None
    keys = [k for k in state_dict if isinstance(k, str)]
    if len(keys) != len(state_dict):
        return None
    wrapped = all(k.startswith(WRAPPER_PREFIX) for k in keys)
    prefix = (WRAPPER_PREFIX if wrapped else '') + NETWORK_PREFIX
    if f'{prefix}base_conv.0.weight' not in state_dict:
        return None
    return wrapped, prefix


def is_official_state_dict(obj):
    """Whether ``obj`` is the state dict of the released network (``Network.base_conv.0.weight``
    is there, possibly under ``module.``)."""
    return _network_keys(obj) is not None


def _indices(names, pattern):
    return sorted({int(m.group(1)) for m in map(re.compile(pattern).match, names) if m})


def _count(names, pattern, what):
    """Number of entries of ``what`` in ``names``; they must be numbered 0..n-1."""
    idx = _indices(names, pattern)
    if idx != list(range(len(idx))):
        missing = sorted(set(range(max(idx) + 1)) - set(idx))
        raise OfficialCheckpointError(
            f'{what} are numbered {idx[:6]}{"..." if len(idx) > 6 else ""}: '
            f'number {missing[0]} is missing')
    return len(idx)


#: released tensors (after 'Network.') whose shape shows ``ch``, and the dimension that does
_CHANNEL_DIMS = [('base_conv.0.weight', 0), ('base_conv.0.bias', 0),
                 ('inp_prev_conv.0.weight', 0), ('inp_prev_conv.0.bias', 0), ('out.weight', 1),
                 ('HGs.0.enc2.0.weight', 0), ('HGs.0.enc2.0.weight', 1)]


def _read_channels(short, prefix):
    """``ch``: the size most of the tensors that show it agree on.

    A vote, not ``base_conv`` alone: a corrupt ``base_conv.0.weight`` would otherwise set a
    wrong variant, and the shape check would then name every other tensor instead of it.
    """
    votes = Counter(int(value.shape[dim]) for name, dim in _CHANNEL_DIMS
                    if isinstance(value := short.get(name), torch.Tensor) and value.dim() > dim)
    if not votes:
        base = short['base_conv.0.weight']
        shape = tuple(base.shape) if isinstance(base, torch.Tensor) else type(base).__name__
        raise OfficialCheckpointError(
            f'{prefix}base_conv.0.weight has shape {shape}, not (ch, 3, 3, 3)')
    return votes.most_common(1)[0][0]


def read_architecture(state_dict):
    """Read the variant of a released state dict from its tensors' shapes.

    Args:
        state_dict (dict): the released ``state_dict`` (keys ``[module.]Network.*``).

    Returns:
        OfficialArchitecture
    """
    found = _network_keys(state_dict)
    if found is None:
        raise OfficialCheckpointError(
            'not a released MTU checkpoint: no Network.base_conv.0.weight')
    prefix = found[1]
    short = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    channels = _read_channels(short, prefix)
    names = list(short)
    num_units = _count(names, r'^HGs\.(\d+)\.', 'units (Network.HGs.<i>)')
    if num_units == 0:
        raise OfficialCheckpointError(f'no unit: no {prefix}HGs.<i> tensors')
    blocks = [_count(names, rf'^HGs\.{i}\.RBs\.(\d+)\.', f'residual blocks of unit {i}')
              for i in range(num_units)]
    if len(set(blocks)) > 1:
        raise OfficialCheckpointError(
            f'the units have different numbers of residual blocks ({blocks}): '
            'not a network of this architecture')
    num_matching = _count(names, r'^motion_layer\.(\d+)\.', 'motion layers')
    if num_matching not in (1, num_units):
        raise OfficialCheckpointError(
            f'{num_matching} motion layers for {num_units} units: only 1 (feature-matching '
            f'skipping, matching in the first unit) or {num_units} (matching in every unit) '
            'have an MTUNet counterpart')
    num_deblur = _count(names, r'^deblur_layer\.(\d+)\.', 'deblur layers')
    if num_deblur not in (0, num_units - 1):
        raise OfficialCheckpointError(
            f'{num_deblur} deblur layers for {num_units} units: the training network has '
            f'{num_units - 1} (one per unit but the last), the test-time network none')
    return OfficialArchitecture(num_units=num_units, channels=channels,
                                num_blocks=blocks[0], num_matching=num_matching,
                                deblur_layers=num_deblur > 0)


def map_key(name):
    """Our restorer key of a released key (after 'Network.'), or None when it maps to nothing."""
    for pattern, repl in _RULES:
        if pattern.match(name):
            return BACKBONE_PREFIX + pattern.sub(repl, name)
    return None


def expected_shapes(arch):
    """{our key: shape} of the MTUNet of ``arch`` (built on the meta device: no memory)."""
    cfg = arch.backbone_cfg()
    cfg.pop('type')
    with torch.device('meta'):
        net = MTUNet(**cfg, aux_outputs=arch.deblur_layers)
    return {BACKBONE_PREFIX + k: tuple(v.shape) for k, v in net.state_dict().items()}


def _tensors(items, one, many):
    """'1 tensor has' / '3 tensors have': the number of ``items`` and the verb that agrees."""
    return f'{plural(len(items), "tensor")} {one if len(items) == 1 else many}'


def _listing(items, limit=3):
    more = f', ... (+{len(items) - limit} more)' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


def convert_official_state_dict(state_dict, config_dir=None):
    """Convert a released state dict to this toolkit's restorer weights, all or nothing.

    Args:
        state_dict (dict): the released ``state_dict`` (keys ``[module.]Network.*``).
        config_dir (str | None): where to look for fitting configs (default: ``configs/mtu`` of
            the checkout the package runs from).

    Returns:
        OfficialConversion

    Raises:
        OfficialCheckpointError: naming the first tensors that map to nothing, are missing or
            have the wrong shape for the variant read from the file.
    """
    arch = read_architecture(state_dict)
    wrapped, prefix = _network_keys(state_dict)
    expected = expected_shapes(arch)
    converted, unmapped, wrong = OrderedDict(), [], []
    released_name = {}
    for key, value in state_dict.items():
        ours = map_key(key[len(prefix):]) if key.startswith(prefix) else None
        if ours is None or ours not in expected:
            unmapped.append(key)
            continue
        released_name[ours] = key
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            wrong.append(f'{key} is {type(value).__name__}'
                         f'{"" if not isinstance(value, torch.Tensor) else " " + str(value.dtype)}'
                         ', not a float tensor')
        elif tuple(value.shape) != expected[ours]:
            wrong.append(f'{key} {tuple(value.shape)} (needs {expected[ours]})')
        converted[ours] = value
    variant = f'the variant read from the file ({arch.describe()})'
    if unmapped:
        raise OfficialCheckpointError(
            f'{_tensors(unmapped, "has", "have")} no counterpart in {variant}: '
            f'{_listing(unmapped)}')
    if wrong:
        raise OfficialCheckpointError(
            f'{_tensors(wrong, "does", "do")} not fit {variant}: {_listing(wrong)}')
    missing = [prefix + _released_name(k) for k in expected if k not in converted]
    if missing:
        raise OfficialCheckpointError(
            f'{_tensors(missing, "is", "are")} missing for {variant}: {_listing(missing)}')
    ordered = OrderedDict((k, converted[k]) for k in expected)
    return OfficialConversion(ordered, arch, fitting_configs(arch, config_dir), wrapped)


def _released_name(ours):
    """The released name (after 'Network.') of our key, for messages about missing tensors."""
    name = ours[len(BACKBONE_PREFIX):]
    for src, dst in [(r'units\.(\d+)\.blocks\.(\d+)\.body\.0\.0', r'HGs.\1.RBs.\2.0'),
                     (r'units\.(\d+)\.blocks\.(\d+)\.body\.1\.0', r'HGs.\1.RBs.\2.2'),
                     (r'units\.(\d+)\.blocks_end', r'HGs.\1.RB_end'),
                     (r'units\.', 'HGs.'), (r'motion_layers\.', 'motion_layer.'),
                     (r'out_conv', 'out'), (r'aux_convs\.', 'deblur_layer.')]:
        name = re.sub(rf'^{src}', dst, name)
    return name


def default_config_dir():
    """``configs/mtu`` of the checkout the package runs from (None when not there)."""
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    path = osp.join(root, 'configs', 'mtu')
    return path if osp.isdir(path) else None


def config_fits(model_cfg, arch):
    """Whether a config's ``model`` is the released network of ``arch`` (same shapes and the
    reference's settings that the weights cannot show)."""
    if model_cfg.get('type') not in ('MTURestorer', 'mtu.MTURestorer'):
        return False
    return network_settings(model_cfg) == arch.network_settings()


def fitting_configs(arch, config_dir=None):
    """The configs in ``config_dir`` (default :func:`default_config_dir`) whose model is the
    released network of ``arch``, as paths relative to the checkout (``configs/mtu/...``).

    The dataset is not in the weights: all datasets' configs of the variant are listed (and the
    half-precision "hp" ones, which run the same weights under float16 autocast).
    """
    config_dir = config_dir or default_config_dir()
    if not config_dir or not osp.isdir(config_dir):
        return []
    root = osp.dirname(osp.dirname(osp.abspath(config_dir)))
    paths = sorted(glob.glob(osp.join(config_dir, '*.py')))
    models = _config_models(tuple((p, osp.getmtime(p)) for p in paths))
    return [osp.relpath(p, root) for p, model_cfg in zip(paths, models)
            if model_cfg is not None and config_fits(model_cfg, arch)]


@functools.lru_cache(maxsize=4)
def _config_models(stamped_paths):
    """The ``model`` dicts of the configs (None for one that does not parse); cached by path
    and modification time, since parsing a config with its bases takes ~0.1 s."""
    from mmengine.config import Config
    models = []
    for path, _ in stamped_paths:
        try:
            models.append(Config.fromfile(path).get('model') or {})
        except Exception:  # noqa: BLE001 - a broken config simply does not fit
            models.append(None)
    return models
