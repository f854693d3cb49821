"""Loading of the compiled kernels (``mtu_toolkit._ext``, built from ``csrc/`` at install).

Import never fails: when the extension is missing, broken or switched off, :data:`ext` is
``None``, :data:`EXT_AVAILABLE` is ``False``, one :class:`ExtensionFallbackWarning` says why and
how to fix it, and ``mtu_toolkit.ops`` runs the pure-PyTorch references instead.

``MTU_SKIP_EXT=1`` (also honoured by ``setup.py``) makes the ops use the references even where
the extension is built.
"""
import importlib
import os
import warnings

import torch  # noqa: F401  (loads libc10/libtorch, which mtu_toolkit._ext links against)

REBUILD_HINT = ('rebuild it with `bash tools/install.sh` (or `pip install --no-build-isolation '
                '--no-deps -e .`); set MTU_SKIP_EXT=1 to use the references on purpose')


class ExtensionFallbackWarning(UserWarning):
    """The compiled ops are unavailable; the slower pure-PyTorch references are used."""


def skip_requested():
    """Whether the environment asks to skip the compiled ops (``MTU_SKIP_EXT``)."""
    return os.environ.get('MTU_SKIP_EXT', '0').strip().lower() not in ('', '0', 'false', 'no')


def import_extension(name):
    """Import a compiled extension of the package (``mtu_toolkit._ext``: the motion-compensation
    ops; ``mtu_toolkit._conv_cpu``: the CPU convolution engine).

    Returns:
        tuple: ``(module or None, reason)``; reason is ``None`` on success, otherwise a sentence
        naming why the extension is not used.
    """
    if skip_requested():
        return None, 'MTU_SKIP_EXT is set'
    try:
        return importlib.import_module(name), None
    except ImportError as err:  # not built, built against another torch, missing symbols
        return None, f'importing {name} failed ({type(err).__name__}: {err})'


def load_extension():
    """Import ``mtu_toolkit._ext`` (see :func:`import_extension`)."""
    return import_extension('mtu_toolkit._ext')


ext, FALLBACK_REASON = load_extension()
EXT_AVAILABLE = ext is not None
EXT_WITH_CUDA = bool(EXT_AVAILABLE and getattr(ext, 'WITH_CUDA', False))



def warn_fallback(what, reason, instead, stacklevel=3):
    """One :class:`ExtensionFallbackWarning`: ``what`` is not used because ``reason``,
    ``instead`` runs; it names the package folder, where the build goes (a checkout's own
    folder, e.g., is used before an installed copy by the tools run from it)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    hint = 'unset MTU_SKIP_EXT' if skip_requested() else REBUILD_HINT
    warnings.warn(f'{what} are not used because {reason}; {instead}. To use them, {hint} '
                  f'(mtu_toolkit here is {package}).', ExtensionFallbackWarning,
                  stacklevel=stacklevel)


if not EXT_AVAILABLE:
    warn_fallback('mtu_toolkit.ops: the compiled ops', FALLBACK_REASON,
                  'falling back to the pure-PyTorch references (correct but several times '
                  'slower)')
