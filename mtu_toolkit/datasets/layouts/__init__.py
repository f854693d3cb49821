"""Dataset layouts: where DVD, GoPro_Large and REDS trees (and plugins' layouts) keep their
frames. Each layout is a registered class (:class:`~.base.DatasetLayout`); these functions look
one up by name and answer the questions datasets and converters ask."""
import os.path as osp

from ...registry import DATASET_LAYOUTS
from ..errors import DatasetError
from ..frame_io import FRAME_EXTS, list_frame_files
from .base import SIDES, DatasetLayout
from .dvd import DVDLayout
from .gopro import GoProLayout
from .reds import REDSLayout

#: the layouts the toolkit ships (a plugin's register more)
LAYOUTS = ('dvd', 'gopro', 'reds')

__all__ = ['DatasetLayout', 'DVDLayout', 'GoProLayout', 'REDSLayout', 'LAYOUTS', 'SIDES',
           'build_layout', 'detect_layout', 'side_dir', 'list_sequences', 'list_splits',
           'list_frames']


def build_layout(layout):
    """The :class:`DatasetLayout` for a name ('dvd') or an instance."""
    if isinstance(layout, DatasetLayout):
        return layout
    return DATASET_LAYOUTS.get(layout)()


def side_dir(root, layout, split, seq, side):
    """Folder of the ``side`` ('blur' | 'sharp') frames of sequence ``seq``."""
    return build_layout(layout).side_dir(root, split, seq, side)


def list_sequences(root, layout, split):
    """Sorted sequence names of a split; a clear error when the split is missing."""
    return build_layout(layout).sequences(root, split)


def list_splits(root, layout):
    """Sorted split names of a dataset tree ('train', 'test', ...)."""
    return build_layout(layout).splits(root)


def list_frames(folder):
    """Image file names of a frame folder in natural order; a clear error when missing/empty."""
    names = list_frame_files(folder)
    if not names:
        raise FileNotFoundError(f'frame folder {folder} has no images {FRAME_EXTS}')
    return names


def detect_layout(root):
    """The name of the registered layout whose :meth:`~DatasetLayout.matches` ``root``."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'dataset root {root} does not exist')
    # REDS first: its split folders would not be mistaken for DVD/GoPro sequences anyway, but
    # its check is the cheapest
    for name in ['reds', 'dvd', 'gopro'] + sorted(
            n for n, cls in DATASET_LAYOUTS.module_dict.items()
            if n not in LAYOUTS and isinstance(cls, type) and n.islower()):
        if DATASET_LAYOUTS.get(name).matches(root):
            return name
    raise DatasetError(f'cannot detect the layout of {root}: expected DVD ({{split}}/<video>/'
                       '{input,GT}), GoPro ({split}/<seq>/{blur_gamma,sharp}) or REDS '
                       '({split}_blur, {split}_sharp)')
