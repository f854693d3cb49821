"""What a dataset layout is: where a tree keeps the blurry and sharp frames of each sequence.

A new layout is one file with one registered class (``@DATASET_LAYOUTS.register_module()``)
that says where a split's sequences are (:meth:`DatasetLayout.split_dir`), where a sequence's
blurry and sharp frames are (:meth:`DatasetLayout.side_dir`), which splits a tree has and how
to recognise the layout (:meth:`DatasetLayout.matches`, for ``--layout auto``). Datasets and
the LMDB converter take ``layout='<name>'``.
"""
import os
import os.path as osp

#: the two sides of a pair
SIDES = ('blur', 'sharp')


def visible_subdirs(folder):
    """Sorted visible sub-folders (hidden ones such as the flow cache ``.mtu_flow`` are not
    splits or sequences)."""
    return sorted(d for d in os.listdir(folder)
                  if not d.startswith('.') and osp.isdir(osp.join(folder, d)))


class DatasetLayout:
    """Base class of the dataset layouts (one instance per lookup; no state)."""

    #: the name configs use (``layout='dvd'``)
    name = None

    #: split folders named otherwise in a known release, ``{folder: split}`` (the reference
    #: implementation's downloads name them after the dataset: ``train_DVD/``, ``test_nah/``)
    split_folders = {}

    def split_dir(self, root, split):
        """The folder whose sub-folders are the sequences of ``split``: ``<root>/<split>``, or
        the folder :attr:`split_folders` names for it when the tree has that instead."""
        plain = osp.join(root, split)
        if not osp.isdir(plain):
            for folder, name in self.split_folders.items():
                if name == split and osp.isdir(osp.join(root, folder)):
                    return osp.join(root, folder)
        return plain

    def side_dir(self, root, split, seq, side):
        """The folder of the ``side`` ('blur' | 'sharp') frames of sequence ``seq``."""
        raise NotImplementedError

    def splits(self, root):
        """Sorted split names of a tree ('train', 'test', ...; a folder of
        :attr:`split_folders` by the split it holds)."""
        return sorted({self.split_folders.get(d, d) for d in visible_subdirs(root)})

    def unpaired_splits(self, root):
        """Splits of the tree left out of :meth:`splits` because a side is missing."""
        return []

    @classmethod
    def matches(cls, root):
        """Whether ``root`` looks like a tree of this layout."""
        raise NotImplementedError

    def side_sequences(self, root, split, side):
        """Sorted sequence names of the ``side`` ('blur' | 'sharp') of ``split`` (the same for
        both sides where a sequence's folder holds both; layouts with a folder per side list
        each side's own, so that a sequence on one side only is found)."""
        return self.sequences(root, split)

    def sequences(self, root, split):
        """Sorted sequence names of ``split``; a clear error when the split is missing."""
        top = self.split_dir(root, split)
        if not osp.isdir(top):
            raise FileNotFoundError(f'{self.name} dataset: split folder {top} does not exist')
        seqs = visible_subdirs(top)
        if not seqs:
            raise FileNotFoundError(f'{self.name} dataset: no sequences in {top}')
        return seqs
