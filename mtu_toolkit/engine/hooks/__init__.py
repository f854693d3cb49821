from .checkpoint_hook import AtomicCheckpointHook
from .restored_frames_hook import SaveRestoredFramesHook
from .visualization_hook import VideoVisualizationHook, make_strip

__all__ = ['AtomicCheckpointHook', 'SaveRestoredFramesHook', 'VideoVisualizationHook',
           'make_strip']
