"""DVD (Su et al. 2017): ``<root>/<split>/<video>/{input,GT}/<frame>.jpg`` (the split folders
of the reference implementation's release, ``train_DVD/`` and ``test_DVD/``, read as train and
test)."""
import os
import os.path as osp

from ...registry import DATASET_LAYOUTS
from ..errors import DatasetError
from .base import DatasetLayout, visible_subdirs


@DATASET_LAYOUTS.register_module(name=['DVDLayout', 'dvd'])
class DVDLayout(DatasetLayout):
    """``<root>/<split>/<video>/input/`` (blurry) and ``.../GT/`` (sharp)."""

    name = 'dvd'
    #: the reference implementation's download (DVD.zip)
    split_folders = {'train_DVD': 'train', 'test_DVD': 'test'}

    def side_dir(self, root, split, seq, side):
        return osp.join(self.split_dir(root, split), seq, 'input' if side == 'blur' else 'GT')

    def splits(self, root):
        found = super().splits(root)
        if 'quantitative_datasets' in found and not {'train', 'test'} & set(found):
            raise DatasetError(
                f"{root}: DVD as Su et al. released it (quantitative_datasets/, without a "
                "train/test split); the configs train on 'train' and test on 'test': use the "
                "reference implementation's release (train_DVD/, test_DVD/) or move the videos "
                f"into {osp.join(root, 'train')}/ and {osp.join(root, 'test')}/")
        return found

    @classmethod
    def matches(cls, root):
        return any({'input', 'GT'} <= set(os.listdir(osp.join(root, split, seq)))
                   for split in visible_subdirs(root)
                   for seq in visible_subdirs(osp.join(root, split)))
