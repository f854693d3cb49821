"""Inference: deblur a video file or a frame folder as a stream, load checkpoints safely,
optimise the network for CPU inference, export it, and time it honestly."""
from .errors import CheckpointError, InferenceError, InputError, OutputError
from .inference import deblur_frames, deblur_video, frame_to_tensor, tensor_to_frame
from .export import export_onnx, export_torchscript, run_step_module
from .init_restorer import ConfigError, check_state_dict, init_restorer, parse_device
from .optimize import optimize_for_inference
from .video_io import open_reader, open_writer

__all__ = [
    'InferenceError', 'InputError', 'OutputError', 'CheckpointError', 'ConfigError',
    'init_restorer', 'check_state_dict', 'parse_device', 'deblur_frames', 'deblur_video',
    'frame_to_tensor', 'tensor_to_frame', 'open_reader', 'open_writer',
    'optimize_for_inference', 'export_torchscript', 'export_onnx', 'run_step_module'
]
