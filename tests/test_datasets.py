import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import cv2
import lmdb
import numpy as np
import pytest
import torch

from data_trees import make_tree, side_dir
from mtu_toolkit.datasets import VideoDeblurDataset
from mtu_toolkit.datasets.frame_store import close_lmdb
from mtu_toolkit.datasets import lmdb_writer
from mtu_toolkit.datasets.errors import DatasetError
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
    close_lmdb(path)  # the readers' handle, before writing to the database
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


def test_random_clips_draw_every_sequence_equally_often(tmp_path):
    """sampling='random': whole rounds over the sequences, the rest drawn at random (a
    ``length`` that is not a multiple of the sequences never left some of them out)."""
    src = str(tmp_path / 'src')
    names = ('a', 'b', 'c', 'd', 'e')
    make_tree(src, 'gopro', seqs=names, frames=3, splits=('train',))

    def drawn(length, epochs):
        ds = VideoDeblurDataset(src, layout='gopro', num_frames=3, length=length)
        np.random.seed(0)
        keys = [ds[i]['data_samples']['key'] for _ in range(epochs) for i in range(length)]
        return {n: keys.count(n) for n in names}

    assert drawn(10, 1) == dict.fromkeys(names, 2)  # whole rounds: each twice an epoch
    for length in (3, 7):
        counts = drawn(length, 300)
        mean = length * 300 / len(names)
        assert all(abs(c - mean) < 0.15 * mean for c in counts.values()), counts


def test_folder_flow_is_computed_once_and_cached(trees, monkeypatch):
    src, out, _ = trees
    from mtu_toolkit.datasets import video_dataset
    calls = []
    build = video_dataset.build_flow_lmdb
    monkeypatch.setattr(video_dataset, 'build_flow_lmdb',
                        lambda *a: calls.append(a) or build(*a))
    kw = dict(layout='gopro', num_frames=3, with_flow=True, length=4)
    disk = VideoDeblurDataset(src, **kw)
    assert len(calls) == 1 and osp.isdir(osp.join(src, '.mtu_flow', 'train.lmdb'))
    VideoDeblurDataset(src, **kw)
    assert len(calls) == 1  # reused, not recomputed
    # the cache is not mistaken for a split or sequence, and equals the converter's flow
    assert VideoDeblurDataset(src, layout='gopro').names == ['s0', 's1']
    db = VideoDeblurDataset(out, backend='lmdb', **kw)
    for i in range(4):
        np.random.seed(i)
        a = disk[i]['data_samples']
        np.random.seed(i)
        b = db[i]['data_samples']
        assert a['frame_indices'] == b['frame_indices']
        assert torch.equal(a['flow'], b['flow'])
    assert a['flow'].abs().max() > 0
    # a stale cache (sequences changed) is rebuilt
    shutil.rmtree(osp.join(src, 'train', 's1'))
    VideoDeblurDataset(src, **kw)
    assert len(calls) == 2


def test_folder_flow_cache_follows_the_frames(trees, capsys, tmp_path):
    """Frames replaced under the same names (edited, mirrored, resized) give a new flow; the
    cache says what it was computed from and is not reused for other frames."""
    src, _, _ = trees
    kw = dict(layout='gopro', num_frames=3, with_flow=True, length=2, sampling='grid')
    first = VideoDeblurDataset(src, **kw)[0]['data_samples']['flow']
    assert 'sharp frames once' in capsys.readouterr().out
    cache = osp.join(src, '.mtu_flow', 'train.lmdb')
    assert open(osp.join(cache, lmdb_writer.FLOW_SOURCE)).read().startswith(
        f'mtu_toolkit flow cache {lmdb_writer.FLOW_CACHE_VERSION}\n')
    for side in ('blur', 'sharp'):  # every frame mirrored, names and count kept
        folder = side_dir(src, 'gopro', 'train', 's0', side)
        for name in os.listdir(folder):
            img = cv2.imread(osp.join(folder, name))
            cv2.imwrite(osp.join(folder, name), img[:, ::-1])
    again = VideoDeblurDataset(src, **kw)[0]['data_samples']['flow']
    assert 'the frames changed since' in capsys.readouterr().out
    assert not torch.equal(again, first)
    fresh = str(tmp_path / 'fresh')  # the converter's flow of the frames as they are now
    convert_dataset(src, fresh, with_flow=True)
    assert torch.equal(again, VideoDeblurDataset(fresh, backend='lmdb', **kw)[0][
        'data_samples']['flow'])
    VideoDeblurDataset(src, **kw)  # the same frames again: reused
    assert 'optical flow' not in capsys.readouterr().out
    for side in ('blur', 'sharp'):  # resized: the flow is the new frames' size
        for seq in ('s0', 's1'):
            folder = side_dir(src, 'gopro', 'train', seq, side)
            for name in os.listdir(folder):
                img = cv2.imread(osp.join(folder, name))
                cv2.imwrite(osp.join(folder, name), cv2.resize(img, (36, 24)))
    assert VideoDeblurDataset(src, **kw)[0]['data_samples']['flow'].shape == (3, 2, 24, 36)
    os.remove(osp.join(cache, lmdb_writer.FLOW_SOURCE))  # an older toolkit's cache
    VideoDeblurDataset(src, **kw)
    assert 'made by an older version of the toolkit' in capsys.readouterr().out
    shutil.rmtree(osp.join(src, 'train', 's1'))  # a sequence fewer
    VideoDeblurDataset(src, **kw)
    assert 'the frames changed since' in capsys.readouterr().out


def test_a_flow_of_another_size_is_named(trees, tmp_path):
    src, out, _ = trees
    other = str(tmp_path / 'other')
    make_tree(other, 'gopro', frames=7, size=(24, 36))
    convert_dataset(other, str(tmp_path / 'other_lmdb'), with_flow=True)
    ds = VideoDeblurDataset(out, backend='lmdb', num_frames=3, with_flow=True, length=2,
                            flow_lmdb=str(tmp_path / 'other_lmdb' / 'train' / 'flow.lmdb'))
    with pytest.raises(ValueError, match=r'flow.lmdb:s\d/0000000\d is \(24, 36\) but its blurry '
                       r'frame .* is \(20, 28\)'):
        ds[0]


def test_blurry_frames_of_another_size_in_a_sequence_are_named(tmp_path):
    # np.stack failed with 'all input arrays must have the same shape', naming no file
    src = str(tmp_path / 'src')
    make_tree(src, 'gopro', seqs=('s0',), frames=4, size=(16, 16))
    blur = side_dir(src, 'gopro', 'test', 's0', 'blur')
    for name in ('00002.png', '00003.png'):
        cv2.imwrite(osp.join(blur, name), np.zeros((20, 16, 3), np.uint8))
    ds = VideoDeblurDataset(src, layout='gopro', split='test')
    with pytest.raises(DatasetError, match=re.escape(
            f'{osp.join(blur, "00002.png")} is (20, 16) but {osp.join(blur, "00000.png")}, an '
            'earlier frame of the same sequence, is (16, 16)')):
        ds[0]


# two processes (DDP ranks) building one folder tree's flow cache: both have computed it
# (neither moved in), then rank 0's goes in and is read, then rank 1's arrives
CACHE_RANK = """
import glob, hashlib, json, os, os.path as osp, sys, time
from mtu_toolkit.datasets import VideoDeblurDataset, lmdb_writer

src, flags, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
path = osp.join(src, '.mtu_flow', 'train.lmdb')


def touch(name):
    open(osp.join(flags, name), 'w').close()


def wait_for(name):
    deadline = time.time() + 60
    while not osp.exists(osp.join(flags, name)):
        if time.time() > deadline:
            sys.exit(f'rank {rank}: no {name}')
        time.sleep(0.02)


finish, seen = lmdb_writer.LmdbBuilder.finish, {}


def finish_together(self):
    finish(self)
    touch(f'built-{rank}')
    wait_for(f'built-{1 - rank}')
    seen.update(visible=osp.exists(path), temporaries=len(glob.glob(path + '.tmp-*')))
    touch(f'seen-{rank}')
    wait_for(f'seen-{1 - rank}')
    if rank == 1:
        wait_for('done-0')


lmdb_writer.LmdbBuilder.finish = finish_together
ds = VideoDeblurDataset(src, layout='gopro', num_frames=3, with_flow=True, length=4)
inode = os.stat(path).st_ino
touch(f'done-{rank}')
wait_for(f'done-{1 - rank}')
flow = hashlib.sha1(b''.join(ds.flow.get_flow(q, i).tobytes()
                             for q in ds.names for i in range(ds.seqs[q]))).hexdigest()
print(json.dumps(dict(seen, inode=inode, inode_after=os.stat(path).st_ino, flow=flow)))
"""


def test_two_processes_building_the_flow_cache_keep_the_first(tmp_path):
    src, flags = str(tmp_path / 'src'), tmp_path / 'flags'
    make_tree(src, 'gopro', frames=7)
    flags.mkdir()
    tests = osp.dirname(osp.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tests, osp.dirname(tests)]),
               OMP_NUM_THREADS='1')
    ranks = [subprocess.Popen([sys.executable, '-c', CACHE_RANK, src, str(flags), str(r)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for r in (0, 1)]
    results = []
    for proc in ranks:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    for r in results:
        # while both were written: each in its own temporary, nothing at the cache's name
        assert r['visible'] is False and r['temporaries'] == 2
    # rank 0's cache, in place and read first, was not swapped for rank 1's
    assert results[0]['inode'] == results[0]['inode_after'] == results[1]['inode']
    assert results[0]['flow'] == results[1]['flow']
    assert os.listdir(osp.join(src, '.mtu_flow')) == ['train.lmdb']  # no temporary left


def test_writers_of_one_cache_never_share_a_temporary(trees):
    src, out, _ = trees
    path = osp.join(src, '.mtu_flow', 'test.lmdb')
    os.makedirs(osp.dirname(path))
    first, second = lmdb_writer.LmdbBuilder(path), lmdb_writer.LmdbBuilder(path)
    assert first.tmp != second.tmp and f'.tmp-mtu{os.getpid()}-' in second.tmp
    first.abort()
    second.abort()
    # a whole cache found where an out-of-date one was looked at is put back, not deleted
    shutil.copytree(osp.join(out, 'test', 'flow.lmdb'), path)
    lmdb_writer._discard_outdated(path, lambda where: True)
    assert os.listdir(osp.dirname(path)) == ['test.lmdb']


def test_lmdb_without_flow_names_the_missing_database(trees):
    _, out, _ = trees
    shutil.rmtree(osp.join(out, 'test', 'flow.lmdb'))
    with pytest.raises(FileNotFoundError, match='--flow'):
        VideoDeblurDataset(out, backend='lmdb', split='test', with_flow=True)


def test_lmdb_store_reopens_after_fork(trees):
    """Each dataloader worker process opens its own LMDB environment."""
    _, out, _ = trees
    ds = VideoDeblurDataset(out, backend='lmdb', num_frames=3, length=4)
    np.random.seed(0)
    first = ds[0]['inputs']
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2,
                                         worker_init_fn=lambda w: np.random.seed(0))
    batch = next(iter(loader))
    assert batch['inputs'].shape == (2, 7, 3, 20, 28)
    assert torch.equal(batch['inputs'][0], first)
    np.random.seed(0)
    assert torch.equal(ds[0]['inputs'], first)  # the parent's handle still works


@pytest.mark.parametrize('name,layout', [('dvd', 'dvd'), ('gopro', 'gopro'), ('reds', 'reds')])
def test_dataset_configs_build_on_both_backends(tmp_path, name, layout):
    from mmengine.config import Config
    root = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', '_base_',
                    'datasets')
    src, out = str(tmp_path / 'src'), str(tmp_path / 'lmdb')
    make_tree(src, layout, frames=13)
    convert_dataset(src, out, with_flow=True)
    for cfg_name, data_root in ((name, out), (f'{name}_folder', src)):
        cfg = Config.fromfile(osp.join(root, f'{cfg_name}.py'))
        for loader in (cfg.train_dataloader, cfg.test_dataloader):
            ds = DATASETS.build(dict(loader.dataset, data_root=data_root))
            assert ds.names == ['s0', 's1']
        sample = ds[0]  # a whole test sequence: 13 frames + 2 context each side
        assert sample['inputs'].shape == (17, 3, 20, 28)
