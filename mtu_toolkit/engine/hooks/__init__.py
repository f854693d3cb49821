from .checkpoint_hook import AtomicCheckpointHook
from .progress_bar_hook import ProgressBarHook
from .restored_frames_hook import SaveRestoredFramesHook
from .strict_load_hook import StrictLoadCheckpointHook, add_strict_loading
from .visualization_hook import VideoVisualizationHook, make_strip

__all__ = ['AtomicCheckpointHook', 'ProgressBarHook', 'SaveRestoredFramesHook',
           'VideoVisualizationHook', 'make_strip', 'StrictLoadCheckpointHook',
           'add_strict_loading']
