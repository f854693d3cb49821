"""CheckedRegistry: unknown and duplicate names give errors that say what is known."""
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
