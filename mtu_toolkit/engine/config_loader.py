"""Load a config for the tools with checked ``--cfg-options``; report user mistakes in one line.

Two things every command-line tool needs:

- :func:`load_config` reads a config file and applies ``--cfg-options``. A key that the config
  does not have stops the tool (mmengine would add it silently, so ``max_iters=1`` instead of
  ``train_cfg.max_iters=1`` trained for the full schedule), naming the closest existing keys.
  A leading ``+`` adds a key on purpose (``+my_new_key=1``); list items are indexed by number
  (``param_scheduler.0.end=30``).
- :func:`run_tool` runs a tool's ``main`` and turns the mistakes a user makes (a missing or
  unparsable config, an unknown ``type`` in a registry, a bad option key, a missing file) into
  one line ``error: ...`` on stderr and a non-zero exit code, instead of a traceback. ``--debug``
  on the command line, or ``MTU_DEBUG=1`` in the environment, shows the traceback instead.
  Other exceptions (bugs) keep their traceback.

A tool uses both like this::

    def main(argv=None):
        parser = argparse.ArgumentParser()
        parser.add_argument('config')
        add_cfg_options_argument(parser, 'train_cfg.max_iters=10')
        add_debug_argument(parser)
        args = parser.parse_args(argv)
        cfg = load_config(args.config, args.cfg_options)
        ...

    if __name__ == '__main__':
        sys.exit(run_tool(main))
"""
import argparse
import difflib
import inspect
import os
import errno
import os.path as osp
import re
import signal
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import Registry

from ..checked_registry import CheckedRegistry, ComponentArgumentError, RegistryKeyError

#: environment variable that shows tracebacks of user errors (as ``--debug`` does)
DEBUG_ENV = 'MTU_DEBUG'

#: prefix of a ``--cfg-options`` key that may be new to the config
NEW_KEY_PREFIX = '+'


class ConfigError(ValueError):
    """A config that cannot be used: missing, unparsable, without a needed key, or a
    ``--cfg-options`` key that does not exist. The message is one line naming the file/key."""
    exit_code = 2


class ArgumentError(ValueError):
    """A command-line value that cannot be used (a missing or malformed input file, an output
    that would replace an input). The message is one line naming the file or option."""
    exit_code = 2


# ----------------------------------------------------------------------------------------------
# loading


def _parse_error(path, err):
    """One line for an exception raised while mmengine parses ``path``."""
    if isinstance(err, SyntaxError):
        line = f', line {err.lineno}' if err.lineno else ''
        if err.filename and osp.exists(err.filename) and not osp.samefile(err.filename, path):
            # a module of its custom_imports (a plugin), not the config itself
            return (f'config {path}: its custom_imports fail: {err.filename}{line}: syntax '
                    f'error: {err.msg}')
        return f'config {path}{line}: syntax error: {err.msg}'
    if isinstance(err, FileNotFoundError) and err.filename:
        return f'config {path}: a file it inherits from does not exist: {err.filename}'
    if isinstance(err, ImportError):
        cause = err  # the innermost error names the module (mmengine wraps it twice)
        while (cause.__cause__ or cause.__context__) is not None:
            cause = cause.__cause__ or cause.__context__
        return (f'config {path}: its custom_imports cannot be imported ({_first_line(cause)}); '
                "is the package's parent folder on PYTHONPATH?")
    return f'config {path}: cannot be parsed ({type(err).__name__}: {_first_line(err)})'


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_config(path, cfg_options=None):
    """Read the config file ``path`` and apply ``cfg_options`` (checked, see
    :func:`apply_cfg_options`).

    Args:
        path (str): a Python config file (``_base_`` inheritance and ``custom_imports`` as
            mmengine handles them).
        cfg_options (dict | None): ``{dotted key: value}`` as ``--cfg-options`` parses it.

    Returns:
        mmengine.config.Config

    Raises:
        ConfigError: the file is missing or cannot be parsed, or an option key is unknown.
    """
    if not osp.exists(path):
        raise ConfigError(f'config {path} does not exist')
    if not osp.isfile(path):
        raise ConfigError(f'config {path} is not a file')
    try:
        cfg = Config.fromfile(path)
    except Exception as err:  # noqa: BLE001 - any parse error becomes one line naming the file
        raise ConfigError(_parse_error(path, err)) from err
    check_top_level_keys(path, cfg)
    if cfg_options:
        apply_cfg_options(cfg, cfg_options)
    return cfg


def check_top_level_keys(path, cfg):
    """Refuse a top-level key that is a near miss of one the Runner reads.

    A config may hold keys of its own (``data_root``, ``train_pipeline``), so an unknown key is
    not an error in itself; but ``train_dataloder = dict(batch_size=2)`` was silently ignored
    and the run trained with the base config's loader. A key within a letter or two of a
    Runner key (difflib ratio >= 0.85) and not itself one is named with the key meant.
    """
    known = runner_keys()
    for key in cfg.keys():
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, 1, cutoff=0.85)
        if close:
            raise ConfigError(f'config {path}: top-level key {key!r} is not one the Runner '
                              f'reads; did you mean {close[0]!r}? (rename a key of your own '
                              'that is this close to one)')


# ----------------------------------------------------------------------------------------------
# --cfg-options


def runner_keys():
    """Top-level keys mmengine's Runner reads (``work_dir``, ``auto_scale_lr``, ...): valid
    options even where a config leaves them out."""
    from mmengine.runner import Runner
    return {name for name in inspect.signature(Runner.__init__).parameters if name != 'self'}


def dotted_keys(node, prefix=''):
    """Every key path of a config: ``['model', 'model.backbone', 'model.backbone.num_units',
    'param_scheduler.0', 'param_scheduler.0.end', ...]`` (list items by index)."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        return []
    out = []
    for key, value in items:
        path = f'{prefix}{key}'
        out.append(path)
        out += dotted_keys(value, path + '.')
    return out


def _walk(cfg, key, may_be_new):
    """``(problem, value)``: why ``key`` cannot be set in ``cfg`` (None when it can), and the
    value it holds now (None for a new key).

    Every part of an existing key must exist (a dict key, or a list index in range); a new key
    (``may_be_new``) may stop existing at any dict, but not pass through a value that holds no
    keys, nor index a list out of range.
    """
    node = cfg._cfg_dict if isinstance(cfg, Config) else cfg
    parts = key.split('.')
    for i, part in enumerate(parts):
        where = '.'.join(parts[:i])
        if isinstance(node, dict):
            if part not in node:
                return (None if may_be_new else 'no such key'), None
            node = node[part]
        elif isinstance(node, list):
            if not part.isdigit():
                return f'{where} is a list: index its items by number ({where}.0, ...)', None
            if int(part) >= len(node):
                return f'{where} has {len(node)} items (indices 0-{len(node) - 1})', None
            node = node[int(part)]
        else:
            return (f'{where} is {node!r} ({type(node).__name__}), not a dict or list; set it '
                    'as a whole'), None
    return None, node


def _check_number(key, value, current):
    """A one-line :class:`ConfigError` when ``key`` holds a number (``current``) and ``value``
    is text that is not one (``max_iters=abc``: else a traceback from deep in the Runner)."""
    if isinstance(current, (int, float)) and not isinstance(current, bool) \
            and isinstance(value, str):
        raise ConfigError(f'--cfg-options {key}={value}: expected a number (the config has '
                          f'{current!r})')


def close_keys(key, known, n=3):
    """Up to ``n`` known dotted keys closest to ``key``: those whose last part is most like
    ``key``'s (``max_iters`` -> ``train_cfg.max_iters``), the whole path breaking ties."""
    last = key.split('.')[-1]
    scored = []
    for candidate in set(known):
        tail = difflib.SequenceMatcher(None, last, candidate.split('.')[-1]).ratio()
        if tail >= 0.7:
            scored.append((-tail, -difflib.SequenceMatcher(None, key, candidate).ratio(),
                           candidate))
    scored.sort()
    return [c for t, _, c in scored[:n] if -t >= -scored[0][0] - 0.1]


def check_cfg_options(cfg, options):
    """Raise a one-line :class:`ConfigError` for the first key of ``options`` that ``cfg`` does
    not have (a ``+key`` may be new). Top-level keys the Runner reads count as existing."""
    known_top = runner_keys()
    for full_key in options:
        new = full_key.startswith(NEW_KEY_PREFIX)
        key = full_key[len(NEW_KEY_PREFIX):] if new else full_key
        if not key or any(not part for part in key.split('.')):
            raise ConfigError(f'--cfg-options {full_key}: empty key or key part')
        top = key.split('.')[0]
        if not new and top in known_top and top not in cfg:
            continue  # e.g. work_dir=..., auto_scale_lr=...: the Runner reads them
        problem, current = _walk(cfg, key, new)
        if problem is None:
            _check_number(key, options[full_key], current)
            continue
        name = cfg.filename or 'the config'
        if problem == 'no such key':
            close = close_keys(key, dotted_keys(cfg._cfg_dict))
            hint = f'; did you mean {" or ".join(close)}?' if close else ''
            raise ConfigError(f'--cfg-options {key}: no such key in {name}{hint} (to add a new '
                              f'key on purpose, write {NEW_KEY_PREFIX}{key}=...)')
        raise ConfigError(f'--cfg-options {full_key}: {problem}')


def apply_cfg_options(cfg, options):
    """Check ``options`` (:func:`check_cfg_options`) and merge them into ``cfg`` in place."""
    if not options:
        return cfg
    check_cfg_options(cfg, options)
    plain = {(k[len(NEW_KEY_PREFIX):] if k.startswith(NEW_KEY_PREFIX) else k): v
             for k, v in options.items()}
    try:
        cfg.merge_from_dict(plain, allow_list_keys=True)
    except (KeyError, TypeError, AttributeError) as err:  # what the check above cannot foresee
        raise ConfigError(f'--cfg-options: cannot be merged into {cfg.filename}: '
                          f'{_first_line(err)}') from err
    return cfg


CFG_OPTIONS_HELP = (
    'override config keys, KEY=VALUE ..., e.g. {example}; list items by index '
    '(param_scheduler.0.end=30). A key the config does not have is an error (close matches '
    'are named); a leading "+" adds a new key on purpose (+my_new_key=1)')


def add_cfg_options_argument(parser, example='train_cfg.max_iters=10'):
    """``--cfg-options KEY=VALUE ...`` (mmengine's ``DictAction``), with help saying how keys
    are checked."""
    parser.add_argument('--cfg-options', nargs='+', action=_CheckedDictAction, default={},
                        metavar='KEY=VALUE', help=CFG_OPTIONS_HELP.format(example=example))


class _CheckedDictAction(DictAction):
    """mmengine's ``DictAction``, with an item lacking ``=`` named by the parser's one line
    (not a traceback from inside mmengine)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values:
            if '=' not in item:
                parser.error(f'{option_string} {item}: expected KEY=VALUE')
            key, value = item.split('=', 1)
            if DICT_SYNTAX.search(value):
                parser.error(f'{option_string} {item}: a dict cannot be given here (values are '
                             'numbers, text, [lists] or (tuples)); set its keys one by one '
                             f'({key}.KEY=VALUE), or write it in a config that inherits this '
                             'one (_base_)')
            try:
                self._parse_iterable(value)
            except RecursionError:  # mmengine's parser recurses on some unbalanced brackets
                parser.error(f'{option_string} {item}: mmengine cannot parse this value '
                             '(brackets are read as lists and tuples); set it in a config that '
                             'inherits this one (_base_)')
        super().__call__(parser, namespace, values, option_string)


#: config syntax for a dict in a ``--cfg-options`` value (``dict(type=...)``, ``{'a': 1}``):
#: mmengine keeps it as text (or recurses without end), and the Runner failed on it later
DICT_SYNTAX = re.compile(r"""(^|[\[(,\s])(dict\(\s*\w+\s*=|\{\s*['"]?\w+['"]?\s*:)""")


# ----------------------------------------------------------------------------------------------
# one-line errors


def size_type(check=None):
    """The argparse ``type`` of a ``--size WIDTHxHEIGHT`` option: ``(width, height)``.

    Args:
        check (callable | None): ``check(height, width)`` raising a ValueError for a size the
            tool cannot use (e.g. :func:`~mtu_toolkit.analysis.complexity.check_frame_size`);
            None: any size of at least 1x1.
    """
    def parse(text):
        try:
            w, h = (int(v) for v in text.lower().split('x'))
        except ValueError:
            raise argparse.ArgumentTypeError(f'size must be WIDTHxHEIGHT, got {text!r}') from None
        if check is not None:
            try:
                check(h, w)
            except ValueError as err:
                raise argparse.ArgumentTypeError(f'{text}: {err}') from None
        elif w < 1 or h < 1:
            raise argparse.ArgumentTypeError(f'size must be at least 1x1, got {text!r}')
        return w, h
    return parse


def add_debug_argument(parser):
    """``--debug``: the full traceback instead of the one-line error (read by :func:`run_tool`
    from the command line; declared here so that the parser accepts and documents it)."""
    parser.add_argument('--debug', action='store_true',
                        help=f'show the full traceback of errors (also: {DEBUG_ENV}=1)')


def debug_requested(argv):
    """Whether ``argv`` holds ``--debug`` (or an abbreviation argparse accepts) or the
    environment sets ``MTU_DEBUG``."""
    if os.environ.get(DEBUG_ENV, '').strip().lower() not in ('', '0', 'false', 'no'):
        return True
    return any(a.startswith('--deb') and '--debug'.startswith(a) for a in argv)


def _one_line(err):
    """``err``'s message in one line. An error re-raised from a DataLoader worker (torch's
    "Caught X in DataLoader worker process 0. Original Traceback ...") is given by the
    worker's own message, the traceback's last line without the exception's name."""
    text = str(err)
    if text.startswith('Caught ') and '\nOriginal Traceback' in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        name = type(err).__name__
        for prefix in (f'{type(err).__module__}.{name}: ', f'{name}: '):
            if last.startswith(prefix):
                return last[len(prefix):]
        return last
    return ' '.join(text.split('\n'))


def _close_argument(message):
    """The argument meant by "X.__init__() got an unexpected keyword argument 'y'", when X is
    a registered component of ours with an argument close to ``y``; else None."""
    from .. import registry
    found = re.match(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", message)
    if not found:
        return None
    name, arg = found.groups()
    for reg in vars(registry).values():
        cls = reg.module_dict.get(name) if isinstance(reg, CheckedRegistry) else None
        if inspect.isclass(cls):
            params = [p for p in inspect.signature(cls.__init__).parameters if p != 'self']
            close = difflib.get_close_matches(arg, params, 1, cutoff=0.75)
            return close[0] if close else None
    return None


def _missing_in_built_class(err, class_name):
    """Whether ``err`` (a missing argument of ``class_name.__init__``) is the config's: raised
    building the component that ``build_from_cfg`` called, there or in the ``__init__`` chain of
    the object it built (a class passing its arguments on to a parent's, as mmengine's
    schedulers do), ``class_name`` one of that object's classes, and the missing arguments
    absent from the config. Not a call inside a component's own code, nor a subclass calling
    its parent wrongly with what the config gave: bugs, not the config's."""
    frames, tb = [], err.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    names = [f.f_code.co_name for f in frames]
    if 'build_from_cfg' not in names:
        return False
    last = len(names) - 1 - names[::-1].index('build_from_cfg')
    given = frames[last].f_locals.get('args')
    missing = re.findall(r"'(\w+)'", _first_line(err).partition(': ')[2])
    if isinstance(given, dict) and any(name in given for name in missing):
        return False
    after = frames[last + 1:]
    if not after:
        return True
    built = after[0].f_locals.get('self')
    return all(f.f_code.co_name == '__init__' and f.f_locals.get('self') is built
               for f in after) \
        and class_name in (c.__name__ for c in type(built).__mro__)


def _mmengine_registry_line(name, scope, registry):
    """One line for a name that mmengine's registry ``scope::registry`` does not know: the
    close names it has, or (under another default scope than ours) where ours are."""
    from mmengine.registry import DefaultScope
    line = f'{name} is not in the {scope}::{registry} registry'
    current = DefaultScope.get_current_instance()
    if current is None or current.scope_name != 'mtu':
        return f"{line} (the toolkit's components are in scope 'mtu': set default_scope='mtu')"
    known = set()
    for reg in _mmengine_registries():
        if reg.name == registry:
            known.update(reg.module_dict)
    close = difflib.get_close_matches(name, sorted(known), 3, cutoff=0.6)
    return f'{line}; did you mean: {", ".join(close)}?' if close else line


def _mmengine_registries():
    """mmengine's root registries and their children (ours among them), each once."""
    import mmengine.registry as mm_registry
    todo = [r for r in vars(mm_registry).values() if isinstance(r, Registry)]
    seen = set()
    while todo:
        reg = todo.pop()
        if id(reg) not in seen:
            seen.add(id(reg))
            yield reg
            todo.extend(reg.children.values())


def _registered_class(name):
    """Whether a class called ``name`` is registered in mmengine's registries or their
    children (ours among them)."""
    return any(inspect.isclass(reg.module_dict.get(name)) for reg in _mmengine_registries())


def _registry_line(err):
    """The registry's message (first line, then the close matches or the known names of the
    first scope that has any: ``mtu::optimizer`` registers none of its own) in one line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    extra = [ln for ln in lines[1:] if ln.startswith('did you mean')]
    extra = extra or [ln for ln in lines[1:]
                      if ln.startswith('known in') and not ln.endswith(': (none)')][:1]
    return ' '.join(lines[:1] + extra)


#: OSErrors that say what is wrong with the user's files or disk, not with the toolkit
USER_OS_ERRORS = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM,
                  errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EEXIST, errno.EFBIG)


def user_error(err):
    """``(message, exit code)`` for an exception that is the user's mistake, else None.

    User mistakes: :class:`ConfigError`, :class:`ArgumentError`, the inference API's errors
    (their ``exit_code``), an unknown or duplicate registry name, a dataset the toolkit
    cannot read as it is (:class:`~mtu_toolkit.datasets.errors.DatasetError`), a missing,
    unreadable or unwritable file or folder, a full disk.
    """
    if isinstance(err, (ConfigError, ArgumentError)):
        return _one_line(err), err.exit_code
    from ..apis.errors import InferenceError  # here: the apis package imports the engine
    from ..datasets.errors import DatasetError
    if isinstance(err, InferenceError):
        return _one_line(err), err.exit_code
    if isinstance(err, DatasetError):
        return _one_line(err), 1
    if isinstance(err, RegistryKeyError):
        return _registry_line(err), 2
    if isinstance(err, ComponentArgumentError):
        return _one_line(err), 2
    if isinstance(err, TypeError) and 'got an unexpected keyword argument' in str(err):
        close = _close_argument(_first_line(err))
        if close:  # a misspelt argument
            return f'{_first_line(err)}; did you mean {close!r}?', 2
        # a config's dict merged into another component's (e.g. --cfg-options
        # model.backbone.mc_head.type=fan keeps the correlation head's max_displacement)
        return (f'{_first_line(err)}: the config gives it a key it does not take (to replace '
                'a dict of a _base_ config, give it _delete_=True, as configs/ablations do)', 2)
    if isinstance(err, TypeError):
        found = re.match(r'(\w+)\.__init__\(\) missing \d+ required (positional |keyword-only )?'
                         r'arguments?: ', _first_line(err))
        # a component the config builds, its arguments short (raised where the registry
        # calls it: not a call inside the toolkit's own code)
        if found and _registered_class(found.group(1)) \
                and _missing_in_built_class(err, found.group(1)):
            return f'{_first_line(err)} (the config must give it)', 2
    found = (re.match(r'(\S+) is not in the (\S+)::(.+?) registry', err.args[0])
             if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str)
             else None)
    if found:  # mmengine's own registries (ours are CheckedRegistry and list close names)
        return _mmengine_registry_line(*found.groups()), 2
    if isinstance(err, OSError) and err.errno in USER_OS_ERRORS or isinstance(
            err, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        if err.filename and err.strerror:
            return f'{err.strerror}: {err.filename}', 1
        return ' '.join(str(err).split('\n')), 1
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a cancelled job), raised like Ctrl-C so that the same
    clean-up runs (see :func:`terminate_like_interrupt`)."""


def _raise_terminated(signum, frame):
    raise Terminated()


def terminate_like_interrupt():
    """From now on SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) in the main
    thread, so a tool's ``finally`` and ``except BaseException`` clean-ups run for it too."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def interruption_of(err):
    """The Ctrl-C or SIGTERM behind ``err``, or None. Code that catches every exception can
    turn one into another error (mmengine formats a config with a bare ``except:``, raising a
    ``SyntaxError`` from whatever arrived meanwhile); the interruption is then in the chain."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def interrupted(err, what):
    """Print the one line that ends an interrupted tool and return its exit code.

    Args:
        err (KeyboardInterrupt): the interruption (:class:`Terminated` for SIGTERM).
        what (str): what became of the output, e.g. ``'no output written'``.

    Returns:
        int: 143 after SIGTERM, 130 after Ctrl-C (the shells' codes for those signals).
    """
    killed = isinstance(err, Terminated)
    print(f'\n{"terminated" if killed else "interrupted"}; {what}', file=sys.stderr, flush=True)
    return 143 if killed else 130


def run_tool(main, argv=None):
    """Run ``main(argv)`` and return its exit code; a user mistake prints one line.

    Args:
        main (callable): the tool's ``main(argv)``; it may return an exit code (None is 0).
        argv (list[str] | None): the arguments (default ``sys.argv[1:]``).

    Returns:
        int: ``main``'s code, or the error's (2 for config and registry mistakes, 1 for a
        missing file, the inference errors' own codes). With ``--debug`` / ``MTU_DEBUG=1``
        the exception propagates with its traceback.
    """
    script, argv = argv is None, sys.argv[1:] if argv is None else list(argv)
    try:
        code = main(argv) or 0
    except Exception as err:  # noqa: BLE001 - sorted into user mistakes and bugs below
        found = user_error(err)
        if found is None or debug_requested(argv):
            raise
        message, code = found
        print(f'error: {message}', file=sys.stderr, flush=True)
    if script:
        # the tool is done and has said so: a Ctrl-C while Python shuts down (torch's exit
        # handlers take a moment) printed a traceback after a run that had succeeded
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    return code
