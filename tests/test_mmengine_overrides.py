"""Where the toolkit overrides mmengine internals, the internals still work as the overrides
assume (checked against mmengine 0.10.7; a newer mmengine that changes them fails here first).
"""
import ast
import inspect
import textwrap

from mmengine.hooks import CheckpointHook
from mmengine.registry import Registry
from mmengine.runner import IterBasedTrainLoop

from mtu_toolkit.checked_registry import CheckedRegistry
from mtu_toolkit.engine.hooks import AtomicCheckpointHook
from mtu_toolkit.engine.loops import ResumableIterBasedTrainLoop


def _calls(function):
    """Names of the functions and methods ``function`` calls, and the hook stages it calls,
    in source order."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = []
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    for node in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
        if name == 'call_hook' and node.args and isinstance(node.args[0], ast.Constant):
            name = f'hook:{node.args[0].value}'
        names.append(name)
    return names


def test_the_training_loop_copy_follows_mmengines_loop():
    """ResumableIterBasedTrainLoop.run is mmengine's IterBasedTrainLoop.run plus one hook
    stage after the data loader replay (and its own log line)."""
    ours = [c for c in _calls(ResumableIterBasedTrainLoop.run)
            if c != 'hook:after_resume_data_skip']
    theirs = _calls(IterBasedTrainLoop.run)
    assert sorted(ours) == sorted(theirs)  # the same calls
    assert [c for c in ours if c.startswith('hook:')] == \
        [c for c in theirs if c.startswith('hook:')]  # the hook stages in the same order


def test_checkpoint_hook_internals_are_still_called():
    """AtomicCheckpointHook overrides _save_checkpoint_with_step and _save_best_checkpoint;
    mmengine must still save through them."""
    assert '_save_checkpoint_with_step' in _calls(CheckpointHook._save_checkpoint)
    assert '_save_best_checkpoint' in _calls(CheckpointHook.after_val_epoch)
    best = inspect.getsource(CheckpointHook._save_best_checkpoint)
    # the atomic override routes these two calls
    assert 'runner.save_checkpoint(' in best and 'self.file_backend.remove(' in best
    for name in ('_save_checkpoint_with_step', '_save_best_checkpoint'):
        assert name in vars(AtomicCheckpointHook)


def test_registry_registers_through_the_checked_method():
    """CheckedRegistry overrides Registry._register_module (and reads _module_dict)."""
    assert '_register_module' in _calls(Registry.register_module)
    assert '_module_dict' in inspect.getsource(Registry._register_module)
    registry = CheckedRegistry('thing')
    registry.register_module(name='a', module=int)
    assert registry._module_dict['a'] is int
