"""Tiny dataset trees in the DVD, GoPro and REDS layouts, for the data tests."""
import os
import os.path as osp

import cv2
import numpy as np

from mtu_toolkit.datasets.layouts import side_dir


def make_tree(root, layout, seqs=('s0', 's1'), frames=6, size=(20, 28), splits=None, seed=0):
    """Random frames in ``layout``; returns {(split, seq, side): [RGB frames]}."""
    rng = np.random.default_rng(seed)
    splits = splits or (('train', 'val') if layout == 'reds' else ('train', 'test'))
    written = {}
    ext = '.jpg' if layout == 'dvd' else '.png'
    for split in splits:
        for seq in seqs:
            for side in ('blur', 'sharp'):
                d = side_dir(root, layout, split, seq, side)
                os.makedirs(d, exist_ok=True)
                imgs = [rng.integers(0, 256, size + (3,), dtype=np.uint8) for _ in range(frames)]
                for i, img in enumerate(imgs):
                    cv2.imwrite(osp.join(d, f'{i:05d}{ext}'), img[..., ::-1])
                # what a reader must give back (JPEG is lossy: read back what was written)
                written[(split, seq, side)] = [
                    cv2.imread(osp.join(d, f'{i:05d}{ext}'))[..., ::-1] for i in range(frames)]
    return written
