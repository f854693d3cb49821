"""CheckedRegistry: unknown and duplicate names give errors that say what is known."""
import subprocess
import sys

import pytest
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope

import mtu_toolkit.models  # noqa: F401
from mtu_toolkit.checked_registry import (CheckedRegistry, DuplicateComponentError,
                                          UnknownComponentError)
from mtu_toolkit.models.mc_heads import FANMCHead
from mtu_toolkit.registry import MODELS


def test_unknown_nested_type_lists_known_names_and_suggests():
    cfg = dict(type='MTURestorer', backbone=dict(type='MTUNet', mc_head=dict(type='FANHead')))
    with pytest.raises(KeyError) as info:
        MODELS.build(cfg)
    assert isinstance(info.value, UnknownComponentError)
    msg = str(info.value)
    assert msg.startswith("'FANHead' is not a registered model in scope 'mtu'")
    assert 'did you mean: FANMCHead' in msg
    known = next(line for line in msg.splitlines() if line.strip().startswith('known in mtu::'))
    for name in ('CorrelationMCHead', 'FANMCHead', 'FlowMCHead', 'NoneMCHead', 'fan', 'flow',
                 'none', 'correlation', 'MTUNet'):
        assert name in known.split(': ')[1].split(', ')
    assert 'known in mmengine::model: BaseDataPreprocessor' in msg  # the parent scope too
    assert 'custom_imports' in msg


def test_runner_path_through_mmengine_root_under_default_scope():
    # mmengine's Runner builds with its root registry; default_scope='mtu' routes to ours
    with DefaultScope.overwrite_default_scope('mtu'):
        assert MMENGINE_MODELS.build(dict(type='fan', motion_channels=4, feat_channels=2,
                                          mid_channels=4, num_blocks=0)).kernel_size == 5
        with pytest.raises(UnknownComponentError, match='known in mtu::model: .*FlowMCHead'):
            MMENGINE_MODELS.build(dict(type='flwo'))


def test_builds_under_the_default_scope_log_no_warning(monkeypatch):
    # mmengine imports '<scope>.registry' and looks for a child of each root registry it
    # builds from; both are there for 'mtu', so a run's log has no "Failed to ..." lines
    import importlib
    import logging

    import mmengine.logging
    from mmengine.registry import LOG_PROCESSORS

    import mtu_toolkit.registry
    assert importlib.import_module('mtu.registry') is mtu_toolkit.registry
    warnings = []
    monkeypatch.setattr(mmengine.logging, 'print_log', lambda msg, logger=None, level=20:
                        warnings.append(msg) if level >= logging.WARNING else None)
    with DefaultScope.overwrite_default_scope('mtu'):
        processor = LOG_PROCESSORS.build(dict(type='LogProcessor', by_epoch=False))
    assert type(processor).__name__ == 'LogProcessor' and warnings == []


def test_membership_and_lookup_of_known_names():
    assert MODELS.get('fan') is FANMCHead and MODELS.get('FANMCHead') is FANMCHead
    assert 'fan' in MODELS and 'BaseDataPreprocessor' in MODELS and 'nope' not in MODELS


def test_duplicate_names_the_existing_origin_and_force():
    with pytest.raises(DuplicateComponentError) as info:
        @MODELS.register_module(name=['MyHead', 'fan'])
        class MyHead:
            pass
    msg = str(info.value)
    assert msg.startswith("'fan' is already registered in mtu::model by "
                          'mtu_toolkit.models.mc_heads.fan.FANMCHead (')
    assert 'mc_heads/fan.py' in msg and 'force=True' in msg and 'test_duplicate' in msg
    assert 'MyHead' not in MODELS  # nothing registered half-way
    assert MODELS.get('fan') is FANMCHead

    things = CheckedRegistry('thing', scope='checked_registry_test')
    things.register_module(name='a', module=int)
    things.register_module(name='a', module=float, force=True)
    assert things.get('a') is float


def test_duplicate_registered_where_there_is_no_source_file():
    # python -c / the REPL: inspect found no file and the message was lost to an OSError
    code = ('import torch, mtu_toolkit.models\n'
            'from mtu_toolkit.registry import MODELS\n'
            'class L1Loss(torch.nn.Module): pass\n'
            'MODELS.register_module(module=L1Loss)\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('mtu_toolkit.checked_registry.DuplicateComponentError: ')
    assert 'cannot register __main__.L1Loss under the same name' in last
