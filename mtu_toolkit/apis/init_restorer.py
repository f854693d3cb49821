"""Build a restorer from a config and load a checkpoint into it for inference, safely.

Checkpoints are loaded with ``weights_only=True`` (the engine's allow-list of mmengine's types),
and strictly: a checkpoint of another architecture is refused with one line naming the config,
the checkpoint and what differs, instead of PyTorch's many-line ``load_state_dict`` error. The
check is the engine's (:func:`~mtu_toolkit.engine.checkpoint.fit_state_dict`), the one the
Runner's ``load_from`` / ``resume`` use too. The paper authors' released files (``*.pytorch``)
are taken as they are: converted on loading, which is said in one line.
"""
import torch
from mmengine.config import Config

from ..engine import checkpoint as engine_ckpt
from ..engine.checkpoint import CheckpointLoadError, load_from_local_weights_only
from ..engine.config_loader import ConfigError, load_config
from ..registry import MODELS
from .errors import CheckpointError, DeviceError


def model_device(model):
    """The device of ``model``'s first parameter, or first buffer (the direct-kernel copies of
    :func:`~mtu_toolkit.deploy.optimize_for_inference` hold their weights as buffers)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device('cpu')


def check_state_dict(model, state_dict, where):
    """:func:`mtu_toolkit.engine.checkpoint.check_state_dict` (the one strict check of every
    tool), its error as the inference API's one-line :class:`CheckpointError`."""
    try:
        return engine_ckpt.check_state_dict(model, state_dict, where)
    except CheckpointLoadError as err:
        raise CheckpointError(str(err)) from None


def load_checkpoint_state(checkpoint, report=print, with_meta=False):
    """The model weights of an mmengine checkpoint (``state_dict``), of a plain state dict, or
    of a released file (converted; ``report`` says so); with ``with_meta``, ``(weights, meta)``
    (``meta`` None for a plain state dict)."""
    try:
        ckpt = load_from_local_weights_only(checkpoint, map_location='cpu', report=report)
    except FileNotFoundError:
        raise CheckpointError(f'checkpoint {checkpoint} does not exist') from None
    except RuntimeError as err:
        raise CheckpointError(str(err).splitlines()[0]) from None
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f'checkpoint {checkpoint} holds no state_dict of model weights')
    if not with_meta:
        return state
    return state, (ckpt.get('meta') if state is not ckpt else None)


def load_weights(model, checkpoint, where, report=print, model_cfg=None):
    """Load ``checkpoint`` (a file) into ``model`` strictly, through the engine's one check.

    Args:
        model (nn.Module): the model built from the config.
        checkpoint (str): mmengine checkpoint, plain state dict or released file.
        where (str): 'checkpoint X for config Y', the start of any message.
        report (callable): gets the one-line notes (a converted released file, absent
            training-only layers).
        model_cfg (dict | None): the config's ``model``: a checkpoint that records other
            network settings (those its weights cannot show) is refused.
    """
    state, meta = load_checkpoint_state(checkpoint, report, with_meta=True)
    try:
        state = engine_ckpt.fit_state_dict(model, state, where, report)
    except CheckpointLoadError as err:
        raise CheckpointError(str(err)) from None
    differences = (engine_ckpt.network_settings_differences(meta, model_cfg)
                   if model_cfg is not None else [])
    if differences:
        raise CheckpointError(engine_ckpt.other_settings_message(where, differences))
    model.load_state_dict(state, strict=True)
    return model


def init_restorer(config, checkpoint=None, device='cpu', infer_dtype=None):
    """Build ``config``'s model, load ``checkpoint`` (strict) and put it in eval mode on ``device``.

    Args:
        config (str | Config): config file (or loaded config) with a ``model`` dict.
        checkpoint (str | None): mmengine checkpoint, or a released file of the paper's authors
            (converted on loading); None keeps the initial weights.
        device (str | torch.device): where to run.
        infer_dtype (str | None): 'float16' / 'bfloat16' autocast at inference; None keeps the
            config's ``model.infer_dtype``.

    Returns:
        MTURestorer: ready for ``stream()`` / ``infer_clip``.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    name = config.filename or '<config>'
    if 'model' not in config:
        raise ConfigError(f'config {name} defines no `model`')
    model_cfg = config.model.copy()
    if infer_dtype is not None:
        model_cfg['infer_dtype'] = infer_dtype
    import mtu_toolkit.models  # noqa: F401  (registers the model classes)
    # in float32 whatever the host program's default (torch.set_default_dtype(torch.float64)
    # gave float64 weights, which no float32 frame could run through)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        model = MODELS.build(model_cfg)
    finally:
        torch.set_default_dtype(default)
    if checkpoint is not None:
        load_weights(model, checkpoint, f'checkpoint {checkpoint} for config {name}',
                     model_cfg=model_cfg)
    device = parse_device(device)
    return model.to(device).eval()


def _backend(kind):
    """torch's module of a device type (``torch.cuda``, ``torch.xpu``, ``torch.backends.mps``),
    or None where this torch has none."""
    return torch.backends.mps if kind == 'mps' else getattr(torch, kind, None)


def parse_device(device, instead='use --device cpu'):
    """``torch.device`` of ``device``; a :class:`DeviceError` (exit code 2) for a name torch does
    not know, a device type this machine lacks (CUDA, MPS, XPU, ...), or a device index it does
    not have. ``instead`` ends the message: what the user can give instead (the option's own
    spelling)."""
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise DeviceError(f'bad device {device!r}: {err}') from None
    if device.type == 'cpu':
        return device
    backend = _backend(device.type)
    is_available = getattr(backend, 'is_available', None)
    if is_available is None or not is_available():
        raise DeviceError(f'device {device} was asked for, but {device.type.upper()} is not '
                          f'available here; {instead}')
    count = getattr(backend, 'device_count', lambda: 1)()
    if device.index is not None and device.index >= count:
        raise DeviceError(f'device {device} was asked for, but this machine has '
                          f'{count} {device.type.upper()} device(s) ({device.type}:0 to '
                          f'{device.type}:{count - 1}); {instead}')
    return device
