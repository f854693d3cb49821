"""The settings of a network that its weights cannot show.

A checkpoint's tensors fix the layers' shapes, but not every setting: the MC head's search
range (``max_displacement``) and smoothing window, whether the units add their input back
(``residual``), inject the previous unit's structure, or match in every unit, and even the
head's type where two heads have no weights (``none`` against ``correlation``) all load
without a shape mismatch and compute something else. The tools therefore keep
:func:`network_settings` of the config that trained a checkpoint in its ``meta``
(``meta['network_settings']``) and compare it with the config that loads it
(:func:`settings_differences`).

The settings are the backbone's arguments and its MC head's, defaults filled in, types named
by class, without the arguments that only decide how training starts (a class lists them in
``INIT_ARGS``: the initialisation, the training-only auxiliary outputs). Values are plain
Python (dicts, lists, str, numbers, bool, None), so that a weights-only load reads them.
"""
import inspect

from ..registry import MODELS


def _registered(kind):
    """The class registered as ``kind`` (a name, scope prefix allowed, or a class), or None."""
    if inspect.isclass(kind):
        return kind
    try:
        cls = MODELS.get(kind) if isinstance(kind, str) else None
    except Exception:  # noqa: BLE001 - a scope that is not imported: unknown here
        return None
    return cls if inspect.isclass(cls) else None


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _component(cfg):
    """{argument: value} of one component's config dict with its class's defaults, ``type``
    the class name; None when its type is not registered."""
    cls = _registered(cfg.get('type'))
    if cls is None:
        return None
    skip = set(getattr(cls, 'INIT_ARGS', ())) | {'type'}
    args = {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}
    args.update(cfg)
    out = {'type': cls.__name__}
    for name, value in args.items():
        if name in skip:
            continue
        if isinstance(value, dict) and 'type' in value:
            value = _component(value) or _plain(value)
        out[name] = _plain(value)
    return out


def network_settings(model_cfg):
    """The settings of a config's ``model`` (its ``backbone``) that weights cannot show, or
    None when the backbone is not a registered component."""
    backbone = (model_cfg or {}).get('backbone') if isinstance(model_cfg, dict) else None
    return _component(backbone) if isinstance(backbone, dict) else None


def _flat(settings, prefix=''):
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def settings_differences(saved, current):
    """What differs between two :func:`network_settings` (``saved``: the checkpoint's,
    ``current``: the config's), as phrases like ``'mc_head.max_displacement 10 in the
    checkpoint, 5 in the config'``; [] when they agree or either is unknown (None)."""
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return []
    a, b = _flat(saved), _flat(current)
    if a.get('mc_head.type') != b.get('mc_head.type'):  # the head's own arguments then differ
        a = {k: v for k, v in a.items() if not k.startswith('mc_head.') or k == 'mc_head.type'}
        b = {k: v for k, v in b.items() if not k.startswith('mc_head.') or k == 'mc_head.type'}
    missing = object()
    return [f'{key} {a.get(key, "unset")!r} in the checkpoint, {b.get(key, "unset")!r} in '
            'the config' for key in sorted(a.keys() | b.keys())
            if a.get(key, missing) != b.get(key, missing)]


__all__ = ['network_settings', 'settings_differences']
