"""GoPro_Large (Nah et al. 2017): ``<root>/<split>/<seq>/{blur_gamma,sharp}/<frame>.png``
(``blur/`` where a sequence has no ``blur_gamma/``; the split folders of the reference
implementation's release, ``train_nah/`` and ``test_nah/``, read as train and test)."""
import os
import os.path as osp

from ...registry import DATASET_LAYOUTS
from .base import DatasetLayout, visible_subdirs


@DATASET_LAYOUTS.register_module(name=['GoProLayout', 'gopro'])
class GoProLayout(DatasetLayout):
    """``<root>/<split>/<seq>/blur_gamma/`` (the blurry input the paper uses) and
    ``.../sharp/``. GoPro_Large ships both ``blur_gamma/`` and ``blur/`` (averaged in linear
    light); a tree with only ``blur/`` (the linear one, or a copy of GoPro made that way) is
    read from it."""

    name = 'gopro'
    #: the reference implementation's download (nah.zip)
    split_folders = {'train_nah': 'train', 'test_nah': 'test'}

    def side_dir(self, root, split, seq, side):
        folder = osp.join(self.split_dir(root, split), seq)
        if side == 'sharp':
            return osp.join(folder, 'sharp')
        gamma = osp.join(folder, 'blur_gamma')
        linear = osp.join(folder, 'blur')
        return linear if not osp.isdir(gamma) and osp.isdir(linear) else gamma

    @classmethod
    def matches(cls, root):
        for split in visible_subdirs(root):
            for seq in visible_subdirs(osp.join(root, split)):
                sub = set(os.listdir(osp.join(root, split, seq)))
                if {'blur_gamma', 'sharp'} <= sub or {'blur', 'sharp'} <= sub:
                    return True
        return False
