"""What a user calls: build a restorer from a config and a checkpoint, deblur a video file or a
frame folder as a stream, read and write videos. Faster inference forms and export live in
:mod:`mtu_toolkit.deploy`, timing and FLOP counting in :mod:`mtu_toolkit.analysis`."""
from .errors import CheckpointError, DeviceError, InferenceError, InputError, OutputError
from .inference import deblur_frames, deblur_video, frame_to_tensor, tensor_to_frame
from .init_restorer import ConfigError, check_state_dict, init_restorer, parse_device
from .video_io import open_reader, open_writer

__all__ = [
    'InferenceError', 'DeviceError', 'InputError', 'OutputError', 'CheckpointError',
    'ConfigError',
    'init_restorer', 'check_state_dict', 'parse_device', 'deblur_frames', 'deblur_video',
    'frame_to_tensor', 'tensor_to_frame', 'open_reader', 'open_writer'
]
