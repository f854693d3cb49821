"""Registries of mtu_toolkit: children of mmengine's root registries under the scope ``mtu``.

Every component joins its registry by one decorator and is built from a config dict::

    >>> from mtu_toolkit.registry import MODELS
    >>> @MODELS.register_module()
    ... class MyHead(nn.Module): ...
    >>> head = MODELS.build(dict(type='MyHead'))

``locations`` names the modules to import so that a name used in a config resolves without any
manual import; third-party code joins through ``custom_imports`` in a config. The registries
are :class:`~mtu_toolkit.checked_registry.CheckedRegistry`: an unknown name or a name registered
twice raises a KeyError that lists the known names or names the module holding the taken one.
"""
import sys

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS

from .checked_registry import CheckedRegistry

# mmengine imports ``<default scope>.registry`` at every build under a default scope, so that a
# scope's package registers its components (mmdet's scope is its package's name); our scope is
# 'mtu' and this module is ``mtu_toolkit.registry``, so it is known to the import system under
# that name too: without it, every run logs "Failed to import `None.registry`" (our components
# are found through the registries' ``locations`` either way)
sys.modules.setdefault('mtu.registry', sys.modules[__name__])

MODELS = CheckedRegistry(
    'model', parent=MMENGINE_MODELS, scope='mtu',
    locations=['mtu_toolkit.models'])
MODEL_WRAPPERS = CheckedRegistry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='mtu',
    locations=['mtu_toolkit.engine'])
DATASETS = CheckedRegistry(
    'dataset', parent=MMENGINE_DATASETS, scope='mtu',
    locations=['mtu_toolkit.datasets'])
#: where a dataset tree keeps its blurry and sharp frames (DVD, GoPro, REDS, a plugin's); no
#: mmengine parent: a layout is looked up by name ('dvd') from the dataset's ``layout`` argument
DATASET_LAYOUTS = CheckedRegistry(
    'dataset layout', scope='mtu', locations=['mtu_toolkit.datasets.layouts'])
DATA_SAMPLERS = CheckedRegistry(
    'data sampler', parent=MMENGINE_DATA_SAMPLERS, scope='mtu',
    locations=['mtu_toolkit.datasets'])
TRANSFORMS = CheckedRegistry(
    'transform', parent=MMENGINE_TRANSFORMS, scope='mtu',
    locations=['mtu_toolkit.datasets.transforms'])
METRICS = CheckedRegistry(
    'metric', parent=MMENGINE_METRICS, scope='mtu',
    locations=['mtu_toolkit.evaluation'])
EVALUATOR = CheckedRegistry(
    'evaluator', parent=MMENGINE_EVALUATOR, scope='mtu',
    locations=['mtu_toolkit.evaluation'])
HOOKS = CheckedRegistry(
    'hook', parent=MMENGINE_HOOKS, scope='mtu',
    locations=['mtu_toolkit.engine.hooks'])
LOOPS = CheckedRegistry(
    'loop', parent=MMENGINE_LOOPS, scope='mtu',
    locations=['mtu_toolkit.engine'])
OPTIMIZERS = CheckedRegistry(
    'optimizer', parent=MMENGINE_OPTIMIZERS, scope='mtu',
    locations=['mtu_toolkit.engine'])
OPTIM_WRAPPERS = CheckedRegistry(
    'optim wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='mtu',
    locations=['mtu_toolkit.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = CheckedRegistry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope='mtu',
    locations=['mtu_toolkit.engine'])
PARAM_SCHEDULERS = CheckedRegistry(
    'parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS, scope='mtu',
    locations=['mtu_toolkit.engine'])
VISUALIZERS = CheckedRegistry(
    'visualizer', parent=MMENGINE_VISUALIZERS, scope='mtu',
    locations=['mtu_toolkit.engine'])
VISBACKENDS = CheckedRegistry(
    'vis backend', parent=MMENGINE_VISBACKENDS, scope='mtu',
    locations=['mtu_toolkit.engine'])
#: (the Runner builds its ``log_processor`` under the config's default scope: without a child
#: here, mmengine warns that it found no 'log_processor' registry in scope 'mtu')
LOG_PROCESSORS = CheckedRegistry(
    'log processor', parent=MMENGINE_LOG_PROCESSORS, scope='mtu',
    locations=['mtu_toolkit.engine'])
