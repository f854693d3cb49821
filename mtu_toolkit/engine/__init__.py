"""Engine: checkpoint safety, exact resume, the two-optimiser recipe, the per-frame DDP wrapper
and hooks."""
from . import hooks  # noqa: F401
from .checkpoint import find_resume_checkpoint, setup_safe_loading
from .launch import finish_distributed, prepare_runtime
from .loops import ResumableIterBasedTrainLoop
from .model_wrappers import MTUDistributedDataParallel
from .optim_wrappers import BF16AutocastOptimWrapper, MTUOptimWrapperConstructor
from .rng_state import get_rng_state, set_rng_state

__all__ = ['find_resume_checkpoint', 'setup_safe_loading', 'prepare_runtime',
           'finish_distributed',
           'ResumableIterBasedTrainLoop', 'MTUDistributedDataParallel',
           'BF16AutocastOptimWrapper', 'MTUOptimWrapperConstructor', 'get_rng_state',
           'set_rng_state']
