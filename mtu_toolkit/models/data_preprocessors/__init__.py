from .video_preprocessor import VideoDataPreprocessor, to_unit_float

__all__ = ['VideoDataPreprocessor', 'to_unit_float']
