"""Errors of the inference API: one class per cause, each with the exit code the tools use."""


class InferenceError(Exception):
    """A user-facing failure of the inference tools; the message is one clear sentence."""
    exit_code = 1


class DeviceError(InferenceError):
    """The device asked for cannot be named or is not on this machine (``--device cuda``
    without CUDA, half precision on the CPU): an argument mistake, exit code 2 as the others."""
    exit_code = 2


class InputError(InferenceError):
    """The input video or frame folder is missing, unreadable or empty."""
    exit_code = 3


class CheckpointError(InferenceError):
    """The checkpoint is missing, unreadable or of another architecture than the config."""
    exit_code = 4


class OutputError(InferenceError):
    """The output cannot be written (unknown extension, encoder missing, disk error)."""
    exit_code = 5
