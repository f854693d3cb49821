from . import transforms  # noqa: F401
from .frame_store import FolderStore, LmdbStore, frame_key, read_meta_info
from .layouts import detect_layout
from .video_dataset import VideoDeblurDataset

__all__ = ['FolderStore', 'LmdbStore', 'VideoDeblurDataset', 'detect_layout', 'frame_key',
           'read_meta_info']
