"""Checkpoint safety: weights-only loading of mmengine checkpoints and atomic writes.

mmengine 0.10.7 checkpoints hold a few non-tensor objects: the message hub's
:class:`~mmengine.logging.HistoryBuffer` (numpy arrays inside, and its statistics methods pickled
as ``getattr(HistoryBuffer, 'mean')``) and numpy scalars in the meta. ``torch.load`` with
``weights_only=True`` (the default since torch 2.6) refuses them, so mmengine's resume fails.
:func:`setup_safe_loading` allow-lists exactly those types, and registers a local-file loader
that always passes ``weights_only=True``: a checkpoint never executes code, and anything outside
the list is refused. ``getattr`` is never allow-listed as such; the name maps to
:func:`history_buffer_method`, which can fetch nothing but HistoryBuffer's statistics methods.

The same loader converts the paper authors' released files (a plain ``Network.*`` state dict,
see :mod:`mtu_toolkit.models.official_checkpoint`) to this toolkit's layout and says so, so that
every tool takes them. :func:`fit_state_dict` is the one strict check of a checkpoint against
the model it goes into, for all tools (``init_restorer`` and the Runner's ``load_from`` /
``resume`` through :class:`~mtu_toolkit.engine.hooks.StrictLoadCheckpointHook`).
"""
import os
import os.path as osp
import pickle
import re

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader

from ..fileio import write_atomically
from ..wording import plural


def history_buffer_method(obj, name):
    """The only ``getattr`` a checkpoint may call: a statistics method of HistoryBuffer."""
    if obj is not HistoryBuffer or name.startswith('_') or name not in vars(HistoryBuffer):
        raise RuntimeError(f'checkpoint refused: it calls getattr({obj!r}, {name!r}); only '
                           'HistoryBuffer statistics methods may be looked up')
    return getattr(HistoryBuffer, name)


def _numpy_globals():
    core = np._core if hasattr(np, '_core') else np.core  # numpy 2 renamed numpy.core
    found = [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    # numpy >= 1.25 may pickle dtypes by their class (numpy.dtypes.Float64DType, ...)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')
                  and isinstance(getattr(dtypes, n), type)]
    # pickles name the module numpy had when they were written: allow both spellings
    named = []
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        named += [(core.multiarray._reconstruct, f'{mod}._reconstruct'),
                  (core.multiarray.scalar, f'{mod}.scalar')]
    return found + named


def safe_globals():
    """Everything beyond tensors that a checkpoint of this toolkit may contain."""
    return [HistoryBuffer, (history_buffer_method, 'builtins.getattr')] + _numpy_globals()


class CheckpointLoadError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, refused by weights-only loading, a released
    file that does not convert, or of another architecture than the model. One line, naming the
    file."""


def load_from_local_weights_only(filename, map_location=None, report=None):
    """``torch.load(filename, weights_only=True)`` with the allow-list; clear errors.

    A released checkpoint of the paper's authors comes back converted, as an mmengine-layout
    ``{'meta': {...}, 'state_dict': ...}``, and ``report`` (default: the current mmengine
    logger) gets one line saying so.
    """
    filename = osp.expanduser(filename)
    check_checkpoint_file(filename)
    # only what is not allow-listed already: the context removes on exit what it added, and
    # must not take away the process-wide list of setup_safe_loading
    present = torch.serialization.get_safe_globals()
    missing = [g for g in safe_globals() if g not in present]
    try:
        with torch.serialization.safe_globals(missing):
            ckpt = torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise CheckpointLoadError(f'cannot load checkpoint {filename} (weights_only=True): '
                                  f'{why_not_loaded(e, filename)}') from e
    return convert_if_official(ckpt, filename, report)


def resume_seed(cfg, filename):
    """Set ``cfg.randomness.seed`` to the seed of the run that saved ``filename`` (a checkpoint
    to resume from) and return ``(saved, given)``; ``(None, given)`` and nothing changed when it
    has none or cannot be read (the Runner's loading names the problem then).

    mmengine adopts the checkpoint's seed while resuming, but only after the training loader,
    whose sampler draws its order from the seed, was built: a run resumed under another seed
    (or none: mmengine draws one) drew other clips than the run it continues.
    """
    given = (cfg.get('randomness') or {}).get('seed')
    try:
        saved = load_from_local_weights_only(filename, 'cpu', report=lambda msg: None)[
            'meta'].get('seed')
    except Exception:  # noqa: BLE001 - reported by the Runner's own loading
        return None, given
    if saved is not None:  # (a new dict: setdefault on a Config returns a detached one)
        cfg.randomness = dict(cfg.get('randomness') or {}, seed=saved)
    return saved, given


def check_checkpoint_file(path, what='checkpoint'):
    """A clear ``FileNotFoundError`` unless ``path`` is a file (a folder is named as one)."""
    if osp.isdir(path):
        raise FileNotFoundError(f'{what} {path} is a folder, not a checkpoint file')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} {path} does not exist')


def why_not_loaded(err, filename):
    """Why torch.load refused ``filename``, in a few words (torch's own advice to turn the
    weights-only loading off does not apply to a corrupt file, and is not repeated)."""
    if isinstance(err, OSError) and err.strerror:  # (unreadable: not a question of content)
        return err.strerror
    if osp.getsize(filename) == 0:
        return 'the file is empty'
    if isinstance(err, EOFError):
        return 'the file ends early (truncated)'
    if isinstance(err, pickle.UnpicklingError) or 'Weights only load failed' in str(err):
        found = re.search(r'Unsupported global: GLOBAL (\S+)', str(err))
        if found:
            return (f'it pickles {found.group(1)}, which the weights-only loading refuses '
                    '(only tensors, plain containers and allow-listed types load)')
        return ('not a checkpoint the weights-only loading accepts: corrupt, or it pickles '
                'objects other than tensors and plain containers')
    first = (str(err).splitlines() or [''])[0].split('. ')[0][:160]
    return f'corrupt or not a checkpoint ({type(err).__name__}{": " + first if first else ""})'


def convert_if_official(ckpt, filename, report=None):
    """``ckpt`` itself, or converted to ``{'meta', 'state_dict'}`` when it is a released file.

    Raises:
        CheckpointLoadError: a released file that does not convert (the tensor named).
    """
    if not isinstance(ckpt, dict) or 'state_dict' in ckpt:
        return ckpt
    # imported here: the model zoo is needed only for released files, and the engine must not
    # pull it in at import time
    from ..models.official_checkpoint import (OfficialCheckpointError,
                                              convert_official_state_dict,
                                              is_official_state_dict)
    if not is_official_state_dict(ckpt):
        return ckpt
    try:
        conversion = convert_official_state_dict(ckpt)
    except OfficialCheckpointError as err:
        raise CheckpointLoadError(f'{filename}: released checkpoint that does not convert: '
                                  f'{err}') from None
    (report or _log)(conversion.summary(filename))
    return dict(meta=conversion.meta(filename), state_dict=conversion.state_dict)


def _log(msg):
    print_log(msg, logger='current')


def training_only_keys(model):
    """State-dict keys of ``model``'s training-only layers: the auxiliary deblur layers
    (modules named ``aux_convs``), which inference never uses."""
    keys = set()
    for name, module in model.named_modules():
        if name.rpartition('.')[2] == 'aux_convs':
            keys.update(f'{name}.{k}' for k in module.state_dict())
    return keys


def _listing(names, limit=3):
    names = sorted(names)
    more = f', ... (+{len(names) - limit})' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def strip_wrapper_prefix(state_dict):
    """Keys without the ``module.`` of a (Distributed)DataParallel wrapper, when all have it."""
    if state_dict and all(isinstance(k, str) and k.startswith('module.') for k in state_dict):
        return type(state_dict)((k[len('module.'):], v) for k, v in state_dict.items())
    return state_dict


def check_state_dict(model, state_dict, where):
    """Check that ``state_dict`` fits ``model`` exactly, but for the training-only layers.

    A checkpoint may lack *all* of :func:`training_only_keys` (the test-time network of a
    released file); anything else missing, unexpected or of another shape is refused.

    Args:
        model (nn.Module): the model built from the config.
        state_dict (dict): name -> tensor from the checkpoint.
        where (str): 'checkpoint X for config Y', put at the start of the message.

    Returns:
        set[str]: the training-only keys the checkpoint lacks (empty when complete).

    Raises:
        CheckpointLoadError: one line naming ``where`` and what differs.
    """
    own = model.state_dict()
    missing, unexpected = own.keys() - state_dict.keys(), state_dict.keys() - own.keys()
    optional = training_only_keys(model)
    absent_optional = missing & optional if optional and optional <= missing else set()
    missing -= absent_optional
    shapes = [f'{k} {_shape(state_dict[k])} vs {tuple(own[k].shape)}'
              for k in sorted(own.keys() & state_dict.keys())
              if not isinstance(state_dict[k], torch.Tensor) or state_dict[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        return absent_optional
    parts = []
    units = _unit_count(state_dict), _unit_count(own)
    if units[0] != units[1] and all(units):  # the likeliest cause first: another variant
        parts.append(f'{units[0]} units in the checkpoint, {units[1]} in the config')
    if missing:
        parts.append(f'{plural(len(missing), "missing key")} ({_listing(missing)})')
    if unexpected:
        parts.append(f'{plural(len(unexpected), "unexpected key")} ({_listing(unexpected)})')
    if shapes:
        parts.append(f'{plural(len(shapes), "shape mismatch", "es")} (checkpoint vs model: '
                     f'{_listing(shapes, 2)})')
    raise CheckpointLoadError(f'{where}: the checkpoint is of another architecture: '
                              + '; '.join(parts))


def saved_network_settings(meta):
    """The :func:`~mtu_toolkit.models.network_settings.network_settings` a checkpoint's
    ``meta`` records (a released file converted by an older toolkit: rebuilt from its recorded
    architecture), or None."""
    if not isinstance(meta, dict):
        return None
    if isinstance(meta.get('network_settings'), dict):
        return meta['network_settings']
    arch = meta.get('architecture')
    if meta.get('source_format') == 'official MTU release' and isinstance(arch, dict):
        from ..models.official_checkpoint import OfficialArchitecture
        try:
            return OfficialArchitecture(**arch).network_settings()
        except TypeError:  # a record of another layout: nothing to compare
            return None
    return None


def network_settings_differences(meta, model_cfg):
    """What differs between the network settings a checkpoint's ``meta`` records and those
    of the config's ``model`` that loads it (settings the weights cannot show: the MC head, its
    search range, the residual, ...); [] when they agree or the checkpoint records none."""
    from ..models.network_settings import network_settings, settings_differences
    return settings_differences(saved_network_settings(meta), network_settings(model_cfg))


def other_settings_message(where, differences):
    """The one line for a checkpoint of the same shapes but other network settings."""
    return (f'{where}: the checkpoint was trained with other network settings, which its '
            f'weights load into without a mismatch: {"; ".join(differences)}')


def _unit_count(state_dict):
    """How many MTU units (``backbone.units.<i>.``) a state dict holds; 0 for none."""
    found = [int(m.group(1)) for k in state_dict
             for m in [re.match(r'(?:module\.)?backbone\.units\.(\d+)\.', k)] if m]
    return max(found) + 1 if found else 0


def _shape(value):
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def fit_state_dict(model, state_dict, where, report=None):
    """The state dict to load into ``model`` strictly: ``state_dict`` checked by
    :func:`check_state_dict` (``module.`` prefixes removed), with the training-only layers it
    lacks taken from ``model`` as they are (``report``, default the current logger, says so
    once).

    Returns:
        dict: a state dict with exactly ``model``'s keys.
    """
    state_dict = strip_wrapper_prefix(state_dict)
    absent = check_state_dict(model, state_dict, where)
    if not absent:
        return state_dict
    layers = ', '.join(sorted({k.rpartition('.aux_convs.')[0] + '.aux_convs.*' for k in absent}))
    (report or _log)(f'{where}: the checkpoint has no auxiliary deblur layers ({layers}, '
                     f'{len(absent)} tensors); they serve training only and inference does not '
                     "use them: they keep the model's initial weights")
    own = model.state_dict()
    filled = type(state_dict)(state_dict)
    for key in sorted(absent):
        filled[key] = own[key]
    return filled


_SET_UP = False


def setup_safe_loading():
    """Allow-list :func:`safe_globals` and route mmengine's local checkpoint loading through
    :func:`load_from_local_weights_only`. Idempotent."""
    global _SET_UP
    if _SET_UP:
        return
    torch.serialization.add_safe_globals(safe_globals())
    # '' is mmengine's scheme for local paths; ours replaces its plain torch.load
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_weights_only, force=True)
    _SET_UP = True


def fsync_replace(tmp_path, path):
    """Flush ``tmp_path`` to disk and rename it to ``path`` (atomic on POSIX)."""
    with open(tmp_path, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(tmp_path, path)


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` through a temporary name: readers see old or new,
    never half (:func:`~mtu_toolkit.fileio.write_atomically`)."""
    write_atomically(path, text.encode('utf-8'))


def _step_of(name):
    """('iter', 12) for 'iter_12.pth'; None for other names."""
    stem, ext = osp.splitext(osp.basename(name))
    prefix, _, num = stem.rpartition('_')
    if ext == '.pth' and prefix in ('iter', 'epoch') and num.isdigit():
        return prefix, int(num)
    return None


def find_resume_checkpoint(work_dir):
    """The checkpoint to resume from in ``work_dir``, or None.

    ``last_checkpoint`` names it, unless ``iter_<n>.pth`` / ``epoch_<n>.pth`` files numbered
    later were written after ``last_checkpoint`` was (a crash between writing a checkpoint and
    updating ``last_checkpoint``; checkpoints are written atomically, so any such file is
    whole): the latest-numbered of those wins. A later-numbered file older than
    ``last_checkpoint`` is an abandoned branch (a run resumed from an earlier checkpoint,
    which records it as its start): it never wins. Without a record (or when the file it
    names is gone: a file of that name in ``work_dir`` is taken first, the folder may have been
    moved), the latest-numbered file. Temporary files never match.
    """
    found = []  # (kind, number, path)
    if osp.isdir(work_dir):
        for name in os.listdir(work_dir):
            step = _step_of(name)
            if step is not None:
                found.append((*step, osp.join(work_dir, name)))
    record = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(record):
        with open(record) as f:
            path = f.read().strip()
        if path and not osp.isfile(path) \
                and osp.isfile(osp.join(work_dir, osp.basename(path))):
            path = osp.join(work_dir, osp.basename(path))  # (the folder was moved or renamed)
        if path and osp.isfile(path):
            step, written = _step_of(path), osp.getmtime(record)
            later = [] if step is None else [
                (number, p) for kind, number, p in found
                if kind == step[0] and number > step[1] and osp.getmtime(p) > written]
            return max(later)[1] if later else path
    if not found:
        return None
    return max((number, p) for _, number, p in found)[1]
