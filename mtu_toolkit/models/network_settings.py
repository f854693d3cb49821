"""The settings of a network that its weights cannot show.

A checkpoint's tensors fix the layers' shapes, but not every setting: the MC head's search
range (``max_displacement``) and smoothing window, whether the units add their input back
(``residual``), inject the previous unit's structure, or match in every unit, and even the
head's type where two heads have no weights (``none`` against ``correlation``) all load
without a shape mismatch and compute something else. The tools therefore keep
:func:`network_settings` of the config that trained a checkpoint in its ``meta``
(``meta['network_settings']``) and compare it with the config that loads it
(:func:`settings_differences`).

The settings are the backbone's arguments and its MC head's, defaults filled in (through the
parent classes a ``**kwargs`` passes on to), types named by class, without the arguments that
only decide how training starts (a class lists them in ``INIT_ARGS``: the initialisation, the
training-only auxiliary outputs) or that change nothing with the others (a class's
``inert_args(args)``: e.g. the structure injection of a head without motion features), and
with the values a class's ``settings_args(args)`` gives for equivalent spellings (the
correlation head's ``smooth`` None, 0 and 1 all record as 0). A default that a class sets in
its ``__init__`` body (``kwargs.setdefault(...)``) is not seen: the parent's default is
recorded; give it as a default in the signature instead.
Values are plain Python (dicts, lists, str, numbers, bool, None; a function or class by its
``module.qualname``; anything else is left out), so that a weights-only load reads them and
two processes record the same. Only settings that both records hold are compared: a setting
added in a later release does not make older checkpoints differ.
"""
import inspect

from ..registry import MODELS


def registered_class(kind):
    """The class registered as ``kind`` (a name, scope prefix allowed, or a class), or None."""
    if inspect.isclass(kind):
        return kind
    try:
        cls = MODELS.get(kind) if isinstance(kind, str) else None
    except Exception:  # noqa: BLE001 - a scope that is not imported: unknown here
        return None
    return cls if inspect.isclass(cls) else None


#: a value that is not recorded (no plain form that two processes agree on)
_UNRECORDED = object()


def _plain(value):
    if isinstance(value, dict):
        return {str(k): v for k, v in ((k, _plain(v)) for k, v in value.items())
                if v is not _UNRECORDED}
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return _UNRECORDED if any(v is _UNRECORDED for v in items) else items
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if inspect.isclass(value) or inspect.isroutine(value):
        return f'{getattr(value, "__module__", "?")}.{getattr(value, "__qualname__", "?")}'
    return _UNRECORDED  # (its repr may hold an address: another in every process)


def default_arguments(cls):
    """{argument: default} of ``cls``'s constructor, and of its parents' where a ``**kwargs``
    passes arguments on to them."""
    args = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.default is not p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                args.setdefault(p.name, p.default)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return args


def _component(cfg):
    """{argument: value} of one component's config dict with its class's defaults, ``type``
    the class name; None when its type is not registered."""
    cls = registered_class(cfg.get('type'))
    if cls is None:
        return None
    args = default_arguments(cls)
    args.update(cfg)
    normalise = getattr(cls, 'settings_args', None)
    if normalise is not None:
        args = normalise(args)
    skip = set(getattr(cls, 'INIT_ARGS', ())) | {'type'}
    inert = getattr(cls, 'inert_args', None)
    if inert is not None:
        skip |= set(inert({k: v for k, v in args.items() if k != 'type'}))
    out = {'type': cls.__name__}
    for name, value in args.items():
        if name in skip:
            continue
        if isinstance(value, dict) and 'type' in value:
            value = _component(value) or _plain(value)
        else:
            value = _plain(value)
        if value is not _UNRECORDED:
            out[name] = value
    return out


def network_settings(model_cfg):
    """The settings of a config's ``model`` (its ``backbone``) that weights cannot show, or
    None when the backbone is not a registered component."""
    backbone = (model_cfg or {}).get('backbone') if isinstance(model_cfg, dict) else None
    return _component(backbone) if isinstance(backbone, dict) else None


def plain_record(value):
    """Config pieces (dicts, lists, values) in the plain form a checkpoint's ``meta`` keeps
    (see the module docstring: values without one left out; None for such a value itself)."""
    value = _plain(value)
    return None if value is _UNRECORDED else value


def _flat(settings, prefix=''):
    out = {}
    items = (settings.items() if isinstance(settings, dict)
             else ((str(i), v) for i, v in enumerate(settings)))
    for key, value in items:
        if isinstance(value, dict) or (isinstance(value, list) and value
                                       and all(isinstance(v, dict) for v in value)):
            out.update(_flat(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def record_differences(saved, current, unset=None):
    """What differs between two plain records (dicts; lists of dicts looked into by index), as
    phrases ``'<key> <saved> in the checkpoint, <current> in the config'``; [] when either is
    not a dict. Over the keys both hold, unless ``unset`` is given: then a key on one side only
    differs too, ``unset`` standing for the missing value (a schedule's added ``weight_decay``
    is a change; a network setting added in a later release is not)."""
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return []
    a, b = _flat(saved), _flat(current)
    keys = a.keys() | b.keys() if unset is not None else a.keys() & b.keys()

    def shown(record, key):
        return repr(record[key]) if key in record else unset

    return [f'{key} {shown(a, key)} in the checkpoint, {shown(b, key)} in the config'
            for key in sorted(keys) if key not in a or key not in b or a[key] != b[key]]


def _as_recorded_now(record):
    """A saved record with this release's spellings: a head given by a registered name as
    the full record of that head (its defaults), and each component's values through its
    class's ``settings_args`` (a record written before a class had one compares alike)."""
    if not isinstance(record, dict):
        return record
    cls = registered_class(record.get('type'))
    normalise = getattr(cls, 'settings_args', None) if cls is not None else None
    out = dict(normalise(dict(record))) if normalise is not None else dict(record)
    for key, value in out.items():
        if isinstance(value, dict) and 'type' in value:
            out[key] = _as_recorded_now(value)
    head = out.get('mc_head')
    if isinstance(head, str) and registered_class(head) is not None:
        out['mc_head'] = _component(dict(type=head))
    return out


def settings_differences(saved, current):
    """What differs between two :func:`network_settings` (``saved``: the checkpoint's,
    ``current``: the config's), as phrases like ``'mc_head.max_displacement 10 in the
    checkpoint, 5 in the config'``, over the settings both hold; [] when they agree or either
    is unknown (None)."""
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return []
    saved, current = _as_recorded_now(saved), _as_recorded_now(current)
    heads = [r.get('mc_head') for r in (saved, current)]
    kinds = [h.get('type') if isinstance(h, dict) else h for h in heads]
    if kinds[0] != kinds[1] or not all(isinstance(h, dict) for h in heads):
        # the heads' own arguments then differ too (or one is not a registered head): the
        # type says it
        saved = dict(saved, mc_head={'type': kinds[0]})
        current = dict(current, mc_head={'type': kinds[1]})
    return record_differences(saved, current)


__all__ = ['network_settings', 'settings_differences', 'plain_record', 'record_differences',
           'registered_class', 'default_arguments']
