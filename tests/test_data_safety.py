"""Data preparation never loses or mixes data, and says in one line what is wrong: a folder
the synthetic renderer did not write is not replaced, a split's databases are swapped in
together or not at all, the output may not lie inside the dataset, names with spaces and
folders named like frames are read, SIGTERM and Ctrl-C leave the output as it was."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from data_trees import make_tree
sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), 'configs'))
from tiny_data import interruptible  # noqa: E402
from mtu_toolkit.datasets import LmdbStore, VideoDeblurDataset, lmdb_writer
from mtu_toolkit.datasets.errors import DatasetError
from mtu_toolkit.datasets.frame_io import decode_rgb
from mtu_toolkit.datasets.synthetic import SYNTHETIC_MARKER, make_synthetic_dataset
from mtu_toolkit.engine.config_loader import user_error
import prewarmed  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVERT = osp.join(ROOT, 'tools', 'dataset_converters', 'convert_to_lmdb.py')
SYNTH = osp.join(ROOT, 'tools', 'dataset_converters', 'make_synthetic_blur.py')


def _run(*args, **kw):
    return prewarmed.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                         timeout=300, **kw)


def _photo(path):
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3)).astype(np.uint8), (5, 5), 2)
    cv2.imwrite(str(path), img)
    return str(path)


def test_synthetic_output_never_replaces_a_folder_it_did_not_write(tmp_path):
    mine = tmp_path / 'mine'
    mine.mkdir()
    photo = _photo(mine / 'photo.jpg')
    (mine / 'notes.txt').write_text('keep')
    for out in (str(mine), str(mine) + '/'):  # (with a trailing slash: the temporary inside)
        proc = _run(SYNTH, out, '--train', photo, '--size', '32', '48', '--frames', '5')
        assert proc.returncode == 1, proc.stderr
        assert 'was not written by make_synthetic_blur' in proc.stderr
        assert 'Traceback' not in proc.stderr
        assert sorted(os.listdir(mine)) == ['notes.txt', 'photo.jpg']
    # its own earlier output (marked) is replaced; so is an empty folder
    out = tmp_path / 'out'
    out.mkdir()
    for _ in range(2):
        proc = _run(SYNTH, str(out) + '/', '--train', photo, '--size', '32', '48', '--frames',
                    '5')
        assert proc.returncode == 0, proc.stderr
        assert sorted(os.listdir(out)) == [SYNTHETIC_MARKER, 'train']
    assert sorted(os.listdir(tmp_path)) == ['mine', 'out']  # no temporary or aside left
    assert VideoDeblurDataset(str(out), split='train').seqs == {'photo': 5}
    with pytest.raises(ValueError, match='not a folder'):
        make_synthetic_dataset(photo, {})
    proc = _run(SYNTH, tmp_path / 'x', '--train', tmp_path / 'nope.jpg')
    assert proc.returncode == 1 and 'source ' in proc.stderr and 'nope.jpg' in proc.stderr


def test_a_failed_swap_leaves_the_old_split_whole(tmp_path, monkeypatch):
    src, out = str(tmp_path / 'src'), str(tmp_path / 'out')
    make_tree(src, 'dvd', frames=3, seed=0)
    lmdb_writer.convert_dataset(src, out, 'dvd')
    old = {side: decode_rgb(LmdbStore(osp.join(out, 'test', f'{side}.lmdb')).get('s0', 0), 'x')
           for side in ('blur', 'sharp')}
    make_tree(src, 'dvd', frames=3, seed=1)  # new frames
    real_replace = os.replace

    def failing(a, b):  # the sharp database cannot be moved in (after blur was)
        if str(b).endswith(osp.join('test', 'sharp.lmdb')) and '.tmp-' in str(a):
            raise PermissionError(13, 'Permission denied', str(a))
        return real_replace(a, b)

    monkeypatch.setattr(lmdb_writer.os, 'replace', failing)
    with pytest.raises(DatasetError, match='the old databases are unchanged'):
        lmdb_writer.convert_dataset(src, out, 'dvd')
    monkeypatch.setattr(lmdb_writer.os, 'replace', real_replace)
    for split in ('train', 'test'):
        assert sorted(os.listdir(osp.join(out, split))) == ['blur.lmdb', 'sharp.lmdb']
    for side in ('blur', 'sharp'):  # both still the old ones
        got = decode_rgb(LmdbStore(osp.join(out, 'test', f'{side}.lmdb')).get('s0', 0), 'x')
        np.testing.assert_array_equal(got, old[side])
    # a run killed between its two renames left the old database aside: moved back
    blur = osp.join(out, 'test', 'blur.lmdb')
    os.replace(blur, blur + '.old-mtu99999')
    lmdb_writer.sweep_leftovers(blur)
    assert osp.isdir(blur) and not osp.exists(blur + '.old-mtu99999')


def test_output_inside_the_dataset_is_refused(tmp_path):
    src = str(tmp_path / 'src')
    make_tree(src, 'dvd', frames=3)
    before = sorted(os.listdir(osp.join(src, 'train')))
    for out in (src, osp.join(src, 'lmdb')):
        proc = _run(CONVERT, src, out)
        assert proc.returncode == 1 and 'inside the dataset tree' in proc.stderr, proc.stderr
    assert sorted(os.listdir(osp.join(src, 'train'))) == before
    assert not osp.exists(osp.join(src, 'lmdb'))


def test_names_with_spaces_and_folders_named_like_frames(tmp_path):
    src, out = str(tmp_path / 'src'), str(tmp_path / 'out')
    make_tree(src, 'dvd', seqs=('my video', 's1'), frames=3)
    os.makedirs(osp.join(src, 'train', 's1', 'input', '00009.jpg'))  # a folder, not a frame
    lmdb_writer.convert_dataset(src, out, 'dvd')
    assert LmdbStore(osp.join(out, 'train', 'blur.lmdb')).sequences() == {'my video': 3,
                                                                          's1': 3}
    ds = VideoDeblurDataset(out, split='train', backend='lmdb', num_frames=3)
    assert ds.seqs == {'my video': 3, 's1': 3}


def test_gopro_trees_with_blur_only_and_reds_without_test_sharp(tmp_path):
    src = str(tmp_path / 'gopro')
    make_tree(src, 'gopro', frames=3)
    for split in ('train', 'test'):
        for seq in ('s0', 's1'):
            os.rename(osp.join(src, split, seq, 'blur_gamma'), osp.join(src, split, seq, 'blur'))
    assert lmdb_writer.convert_dataset(src, str(tmp_path / 'g'))['test'] == {'s0': 3, 's1': 3}
    src = str(tmp_path / 'reds')
    make_tree(src, 'reds', frames=3)
    os.makedirs(osp.join(src, 'test_blur', '000'))  # REDS publishes no test_sharp
    _photo(osp.join(src, 'test_blur', '000', '00000000.png'))
    proc = _run(CONVERT, src, tmp_path / 'r')
    assert proc.returncode == 0, proc.stderr
    assert 'test: skipped (no sharp frames)' in proc.stdout
    assert sorted(os.listdir(tmp_path / 'r')) == ['train', 'val']
    proc = _run(CONVERT, src, tmp_path / 'r2', '--splits', 'test')
    assert proc.returncode == 1 and 'test_sharp does not exist' in proc.stderr
    # a sequence on the sharp side only is named, not dropped
    os.makedirs(osp.join(src, 'train_sharp', 's9'))
    _photo(osp.join(src, 'train_sharp', 's9', '00000000.png'))
    with pytest.raises(DatasetError, match=r"only sharp \['s9'\]"):
        lmdb_writer.convert_dataset(src, str(tmp_path / 'r3'), splits=['train'])


def test_dataset_and_disk_errors_are_user_errors():
    assert user_error(DatasetError('a.lmdb: truncated')) == ('a.lmdb: truncated', 1)
    err = PermissionError(13, 'Permission denied', '/data/x/GT')
    assert user_error(err) == ('Permission denied: /data/x/GT', 1)
    assert user_error(OSError(28, 'No space left on device', '/out'))[1] == 1
    assert user_error(ValueError('a bug')) is None


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_conversion_leaves_the_output_as_it_was(tmp_path, sig):
    src, out = str(tmp_path / 'src'), str(tmp_path / 'out')
    make_tree(src, 'dvd', seqs=('a', 'b', 'c'), frames=60, size=(96, 128))
    proc = subprocess.Popen([sys.executable, CONVERT, src, out, '--flow'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)
    deadline = time.time() + 120
    while not list(tmp_path.glob('out/*/*.tmp-*')) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert 'Traceback' not in err
    assert ('terminated' if sig == signal.SIGTERM else 'interrupted') in err
    assert not osp.exists(out)  # nothing, not even the folders it made


class _TooSmall(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        raise DatasetError('ClipRandomCrop: crop 256x256 larger than frames 96x128 of s0')


def test_a_dataset_error_in_a_loader_worker_is_its_own_line():
    # the configs load with 4 workers: torch re-raises the worker's error with its whole
    # traceback in the message, which the tools printed as one 1,500-character line
    loader = torch.utils.data.DataLoader(_TooSmall(), num_workers=1)
    with pytest.raises(DatasetError) as info:
        next(iter(loader))
    assert 'Original Traceback' in str(info.value)
    assert user_error(info.value) == (
        'ClipRandomCrop: crop 256x256 larger than frames 96x128 of s0', 1)
