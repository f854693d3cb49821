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
        """The splits with both sides (REDS ships ``test_blur`` without ``test_sharp``)."""
        return [s for s in self._blur_splits(root) if osp.isdir(osp.join(root, f'{s}_sharp'))]

    def unpaired_splits(self, root):
        return [s for s in self._blur_splits(root) if s not in self.splits(root)]

    @staticmethod
    def _blur_splits(root):
        return sorted(e[:-5] for e in visible_subdirs(root) if e.endswith('_blur'))

    def side_sequences(self, root, split, side):
        top = osp.join(root, f'{split}_{side}')
        if not osp.isdir(top):
            raise FileNotFoundError(f'{self.name} dataset: split folder {top} does not exist'
                                    + (' (REDS does not publish the sharp frames of its test '
                                       'split; convert --splits train val)'
                                       if side == 'sharp' and split == 'test' else ''))
        return visible_subdirs(top)

    @classmethod
    def matches(cls, root):
        return any(e.endswith('_blur') for e in os.listdir(root))
