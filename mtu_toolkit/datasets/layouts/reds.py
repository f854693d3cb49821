"""REDS (Nah et al. 2019): ``<root>/<split>_blur/<seq>/`` and ``<root>/<split>_sharp/<seq>/``."""
import os
import os.path as osp

from ...registry import DATASET_LAYOUTS
from .base import DatasetLayout, visible_subdirs


@DATASET_LAYOUTS.register_module(name=['REDSLayout', 'reds'])
class REDSLayout(DatasetLayout):
    """``<root>/{train,val}_blur/<seq>/`` and ``<root>/{train,val}_sharp/<seq>/``."""

    name = 'reds'

    def split_dir(self, root, split):
        return osp.join(root, f'{split}_blur')

    def side_dir(self, root, split, seq, side):
        return osp.join(root, f'{split}_{side}', seq)

    def splits(self, root):
        return sorted(e[:-5] for e in visible_subdirs(root) if e.endswith('_blur'))

    @classmethod
    def matches(cls, root):
        return any(e.endswith('_blur') for e in os.listdir(root))
