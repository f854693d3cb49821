"""An mmengine ``Registry`` whose errors say what is known: unknown names and duplicates.

mmengine answers a misspelt ``type`` with "X is not in the mtu::model registry" and a second
registration with "X is already registered in model at <module>". Both leave the user to
find out what the right name is or where the clash comes from. This registry::

    >>> MODELS.build(dict(type='FANHead'))
    UnknownComponentError: 'FANHead' is not a registered model in scope 'mtu' ...
        did you mean: FANMCHead?
        known in mtu::model: CorrelationMCHead, FANMCHead, ...
        known in mmengine::model: BaseDataPreprocessor, ...
    >>> @MODELS.register_module()
    ... class FANMCHead: ...
    DuplicateComponentError: 'FANMCHead' is already registered in mtu::model by
        mtu_toolkit.models.mc_heads.fan.FANMCHead (.../fan.py); ... pass force=True ...

Both errors are ``KeyError`` subclasses, as mmengine's own. The lookup raises from
:meth:`CheckedRegistry.get`, the one method mmengine's builders call on the scope's registry
(also when a runner builds through mmengine's root registries under ``default_scope='mtu'``),
so configs run by the tools get the same message.
"""
import difflib
import inspect

from mmengine.registry import Registry


class RegistryKeyError(KeyError):
    """A KeyError whose message prints as written (KeyError would quote and escape it)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ''


class UnknownComponentError(RegistryKeyError):
    """A name that no registry in the scope chain knows."""


class DuplicateComponentError(RegistryKeyError):
    """A name registered twice without ``force=True``."""


class ComponentArgumentError(ValueError):
    """A registered component given an argument it refuses (``num_units=0``, an even
    smoothing window): raised when it is built, naming the component and the argument, so
    that a config or ``--cfg-options`` mistake is one line from the tools, not a traceback
    from the first forward."""


def _origin(obj):
    """``module.QualName (file)`` of a registered object, as precise as it can be told."""
    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    try:
        return f'{name} ({inspect.getsourcefile(obj)})'
    except (TypeError, OSError):  # built-in, or defined where there is no file (python -c, REPL)
        return name


class CheckedRegistry(Registry):
    """``mmengine.registry.Registry`` with errors that list the known names.

    Same arguments and behaviour as mmengine's ``Registry``, except:

    - :meth:`get` raises :class:`UnknownComponentError` (a KeyError) for an unknown name
      instead of returning None; ``name in registry`` stays a plain membership test;
    - registering a taken name raises :class:`DuplicateComponentError` naming the module that
      holds it and how to replace it.
    """

    def known_names(self):
        """``[(scope::name, sorted names)]`` for this registry and its ancestors."""
        out, registry = [], self
        while registry is not None:
            out.append((f'{registry.scope}::{registry.name}', sorted(registry.module_dict)))
            registry = registry.parent
        return out

    def get(self, key):
        obj = super().get(key)
        if obj is None:
            raise UnknownComponentError(self._unknown_message(key))
        return obj

    def __contains__(self, key):
        try:
            return super().get(key) is not None
        except Exception:  # mmengine raises RuntimeError for some unresolvable dotted keys
            return False

    def _unknown_message(self, key):
        known = self.known_names()
        everything = [name for _, names in known for name in names]
        lines = [f'{key!r} is not a registered {self.name} in scope {self.scope!r} (nor in the '
                 f'scopes it inherits from).']
        close = difflib.get_close_matches(key.split('.')[-1], everything, n=3, cutoff=0.6)
        if close:
            lines.append(f"  did you mean: {', '.join(close)}?")
        for where, names in known:
            lines.append(f"  known in {where}: {', '.join(names) or '(none)'}")
        lines.append('  A component outside mtu_toolkit must be imported before it is built: '
                     "add custom_imports = dict(imports=['your_package']) to the config.")
        return '\n'.join(lines)

    # mmengine's private Registry._register_module (0.10.7) is where every registration goes;
    # overridden to name the module holding a taken name (tests/test_mmengine_overrides.py)
    def _register_module(self, module, module_name=None, force=False):
        names = module_name if module_name is not None else getattr(module, '__name__', None)
        for name in ([names] if isinstance(names, str) else names or []):
            if not force and name in self._module_dict:
                raise DuplicateComponentError(
                    f'{name!r} is already registered in {self.scope}::{self.name} by '
                    f'{_origin(self._module_dict[name])}; cannot register '
                    f'{_origin(module)} under the same name. Rename the new component, or pass '
                    f'force=True to register_module() to replace the existing one.')
        super()._register_module(module, module_name, force)
