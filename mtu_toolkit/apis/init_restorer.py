"""Build a restorer from a config and load a checkpoint into it for inference, safely.

Checkpoints are loaded with ``weights_only=True`` (the engine's allow-list of mmengine's types),
and strictly: a checkpoint of another architecture is refused with one line naming the config,
the checkpoint and what differs, instead of PyTorch's many-line ``load_state_dict`` error.
"""
import torch
from mmengine.config import Config

from ..engine.checkpoint import load_from_local_weights_only
from ..engine.config_loader import ConfigError, load_config
from ..registry import MODELS
from .errors import CheckpointError, InferenceError


def model_device(model):
    """The device of ``model``'s first parameter, or first buffer (the direct-kernel copies of
    :func:`~mtu_toolkit.deploy.optimize_for_inference` hold their weights as buffers)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device('cpu')


def _listing(names, limit=3):
    names = sorted(names)
    more = f', ... (+{len(names) - limit})' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def check_state_dict(model, state_dict, where):
    """Raise a one-line :class:`CheckpointError` unless ``state_dict`` fits ``model`` exactly.

    Args:
        model (nn.Module): the model built from the config.
        state_dict (dict): name -> tensor from the checkpoint.
        where (str): 'checkpoint X for config Y', put at the start of the message.
    """
    own = model.state_dict()
    missing, unexpected = own.keys() - state_dict.keys(), state_dict.keys() - own.keys()
    shapes = [f'{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}'
              for k in sorted(own.keys() & state_dict.keys())
              if not isinstance(state_dict[k], torch.Tensor) or state_dict[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f'{len(missing)} missing keys ({_listing(missing)})')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected keys ({_listing(unexpected)})')
    if shapes:
        parts.append(f'{len(shapes)} shape mismatches (checkpoint vs model: '
                     f'{_listing(shapes, 2)})')
    raise CheckpointError(f'{where}: the checkpoint is of another architecture: '
                          + '; '.join(parts))


def load_checkpoint_state(checkpoint):
    """The model weights of an mmengine checkpoint (``state_dict``) or of a plain state dict."""
    try:
        ckpt = load_from_local_weights_only(checkpoint, map_location='cpu')
    except FileNotFoundError:
        raise CheckpointError(f'checkpoint {checkpoint} does not exist') from None
    except RuntimeError as err:
        raise CheckpointError(str(err).splitlines()[0]) from None
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f'checkpoint {checkpoint} holds no state_dict of model weights')
    return state


def init_restorer(config, checkpoint=None, device='cpu', infer_dtype=None):
    """Build ``config``'s model, load ``checkpoint`` (strict) and put it in eval mode on ``device``.

    Args:
        config (str | Config): config file (or loaded config) with a ``model`` dict.
        checkpoint (str | None): mmengine checkpoint; None keeps the initial weights.
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
    model = MODELS.build(model_cfg)
    if checkpoint is not None:
        state = load_checkpoint_state(checkpoint)
        check_state_dict(model, state, f'checkpoint {checkpoint} for config {name}')
        model.load_state_dict(state, strict=True)
    device = parse_device(device)
    return model.to(device).eval()


def parse_device(device):
    """``torch.device`` of ``device``; a clear error when CUDA is asked for but absent."""
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise InferenceError(f'bad device {device!r}: {err}') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise InferenceError(f'device {device} was asked for, but CUDA is not available here; '
                             'use --device cpu')
    return device
