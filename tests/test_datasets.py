import os.path as osp
import shutil

import lmdb
import numpy as np
import pytest
import torch

from data_trees import make_tree
from mtu_toolkit.datasets import VideoDeblurDataset
from mtu_toolkit.datasets.lmdb_writer import convert_dataset
from mtu_toolkit.registry import DATASETS

PIPELINE = [dict(type='ClipRandomCrop', size=16), dict(type='ClipRandomFlip'),
            dict(type='ClipRandomRot90')]


@pytest.fixture
def trees(tmp_path):
    src, out = str(tmp_path / 'src'), str(tmp_path / 'lmdb')
    written = make_tree(src, 'gopro', frames=7)
    convert_dataset(src, out, with_flow=True)
    return src, out, written


def test_whole_sequences_with_clamped_context(trees):
    src, _, written = trees
    ds = VideoDeblurDataset(src, layout='gopro', split='test')
    assert len(ds) == 2
    s = ds[0]
    assert s['inputs'].shape == (11, 3, 20, 28) and s['inputs'].dtype == torch.uint8
    assert s['data_samples']['gt'].shape == (7, 3, 20, 28)
    assert s['data_samples']['frame_indices'] == list(range(7))
    blur = written[('test', 's0', 'blur')]
    expected = [blur[i] for i in (0, 0, 0, 1, 2, 3, 4, 5, 6, 6, 6)]
    np.testing.assert_array_equal(s['inputs'].permute(0, 2, 3, 1).numpy(), np.stack(expected))


def test_folder_and_lmdb_give_the_same_clips(trees):
    src, out, _ = trees
    kw = dict(layout='gopro', num_frames=3, pipeline=PIPELINE, length=6)
    disk = DATASETS.build(dict(type='VideoDeblurDataset', data_root=src, **kw))
    db = DATASETS.build(dict(type='VideoDeblurDataset', data_root=out, backend='lmdb', **kw))
    np.random.seed(3)
    a = [disk[i] for i in range(6)]
    np.random.seed(3)
    b = [db[i] for i in range(6)]
    for x, y in zip(a, b):
        assert torch.equal(x['inputs'], y['inputs'])
        assert torch.equal(x['data_samples']['gt'], y['data_samples']['gt'])
        assert x['data_samples']['frame_indices'] == y['data_samples']['frame_indices']
    assert a[0]['inputs'].shape == (7, 3, 16, 16)


def test_flow_is_delivered(trees):
    _, out, _ = trees
    ds = VideoDeblurDataset(out, backend='lmdb', num_frames=3, with_flow=True, length=2)
    s = ds[0]
    assert s['data_samples']['flow'].shape == (3, 2, 20, 28)
    assert s['data_samples']['flow'].dtype == torch.float32


def test_lmdb_whose_meta_info_disagrees_with_keys(trees):
    _, out, _ = trees
    path = osp.join(out, 'train', 'sharp.lmdb')
    meta = osp.join(path, 'meta_info.txt')
    text = open(meta).read()
    open(meta, 'w').write(text.replace('s1 7', 's1 9'))
    with pytest.raises(ValueError, match='s1 with 9 frames'):
        VideoDeblurDataset(out, backend='lmdb')
    open(meta, 'w').write(text)
    env = lmdb.open(path)
    with env.begin(write=True) as txn:
        txn.put(b'extra/00000000', b'x')
    env.close()
    with pytest.raises(ValueError, match='holds 15 keys'):
        VideoDeblurDataset(out, backend='lmdb')


def test_missing_lmdb_and_short_sequences(trees, tmp_path):
    src, out, _ = trees
    shutil.rmtree(osp.join(out, 'test', 'blur.lmdb'))
    with pytest.raises(FileNotFoundError, match='blur.lmdb'):
        VideoDeblurDataset(out, backend='lmdb', split='test')
    with pytest.raises(ValueError, match='fewer than num_frames=8'):
        VideoDeblurDataset(src, layout='gopro', num_frames=8)
