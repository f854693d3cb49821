"""GoPro_Large (Nah et al. 2017): ``<root>/<split>/<seq>/{blur_gamma,sharp}/<frame>.png``."""
import os
import os.path as osp

from ...registry import DATASET_LAYOUTS
from .base import DatasetLayout, visible_subdirs


@DATASET_LAYOUTS.register_module(name=['GoProLayout', 'gopro'])
class GoProLayout(DatasetLayout):
    """``<root>/<split>/<seq>/blur_gamma/`` (the blurry input the paper uses) and
    ``.../sharp/``."""

    name = 'gopro'

    def side_dir(self, root, split, seq, side):
        return osp.join(root, split, seq, 'blur_gamma' if side == 'blur' else 'sharp')

    @classmethod
    def matches(cls, root):
        for split in visible_subdirs(root):
            for seq in visible_subdirs(osp.join(root, split)):
                sub = set(os.listdir(osp.join(root, split, seq)))
                if {'blur_gamma', 'sharp'} <= sub or {'blur', 'sharp'} <= sub:
                    return True
        return False
