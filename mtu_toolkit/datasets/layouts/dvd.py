"""DVD (Su et al. 2017): ``<root>/<split>/<video>/{input,GT}/<frame>.jpg``."""
import os
import os.path as osp

from ...registry import DATASET_LAYOUTS
from .base import DatasetLayout, visible_subdirs


@DATASET_LAYOUTS.register_module(name=['DVDLayout', 'dvd'])
class DVDLayout(DatasetLayout):
    """``<root>/<split>/<video>/input/`` (blurry) and ``.../GT/`` (sharp)."""

    name = 'dvd'

    def side_dir(self, root, split, seq, side):
        return osp.join(root, split, seq, 'input' if side == 'blur' else 'GT')

    @classmethod
    def matches(cls, root):
        return any({'input', 'GT'} <= set(os.listdir(osp.join(root, split, seq)))
                   for split in visible_subdirs(root)
                   for seq in visible_subdirs(osp.join(root, split)))
