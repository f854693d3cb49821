import os
import os.path as osp
import sys

import numpy as np
import pytest

from data_trees import make_tree, side_dir
from mtu_toolkit.datasets import LmdbStore, detect_layout, read_meta_info
from mtu_toolkit.datasets.frame_io import decode_rgb
from mtu_toolkit.datasets import lmdb_writer

import prewarmed

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(ROOT, 'tools', 'dataset_converters', 'convert_to_lmdb.py')


@pytest.mark.parametrize('layout', ['dvd', 'gopro', 'reds'])
def test_convert_reads_back_bit_exact(tmp_path, layout):
    src, out = str(tmp_path / 'src'), str(tmp_path / 'lmdb')
    written = make_tree(src, layout)
    assert detect_layout(src) == layout
    proc = prewarmed.run([sys.executable, TOOL, src, out], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'sequences' in proc.stdout  # the summary
    split = 'val' if layout == 'reds' else 'test'
    for side in ('blur', 'sharp'):
        store = LmdbStore(osp.join(out, split, f'{side}.lmdb'))
        assert read_meta_info(store.path) == {'s0': (6, (20, 28, 3)), 's1': (6, (20, 28, 3))}
        for i in range(6):
            got = decode_rgb(store.get('s1', i), 'x')
            np.testing.assert_array_equal(got, written[(split, 's1', side)][i])
    assert not [p for p in os.listdir(osp.join(out, split)) if '.tmp' in p]


@pytest.mark.parametrize('layout, folders', [('dvd', ('train_DVD', 'test_DVD')),
                                              ('gopro', ('train_nah', 'test_nah'))])
def test_the_reference_releases_split_folders_are_train_and_test(tmp_path, layout, folders):
    # the reference implementation's downloads (DVD.zip, nah.zip) name the split folders after
    # the dataset; the converter wrote splits 'train_DVD' / 'test_DVD' the configs never read
    src, out = str(tmp_path / 'src'), str(tmp_path / 'lmdb')
    written = make_tree(src, layout, seqs=('s0',), frames=3, splits=folders)
    assert detect_layout(src) == layout
    lmdb_writer.convert_dataset(src, out)
    assert sorted(os.listdir(out)) == ['test', 'train']
    store = LmdbStore(osp.join(out, 'test', 'sharp.lmdb'))
    np.testing.assert_array_equal(decode_rgb(store.get('s0', 2), 'x'),
                                  written[(folders[1], 's0', 'sharp')][2])


def test_dvd_without_a_split_is_named(tmp_path):
    # Su et al.'s own release: every video under quantitative_datasets/, no train/test
    src, out = str(tmp_path / 'DVD'), str(tmp_path / 'lmdb')
    make_tree(src, 'dvd', seqs=('IMG_0003',), frames=2, splits=('quantitative_datasets',))
    proc = prewarmed.run([sys.executable, TOOL, src, out], capture_output=True, text=True)
    assert proc.returncode == 1 and not osp.exists(out)
    assert proc.stderr.count('\n') == 1 and 'without a train/test split' in proc.stderr
    assert 'train_DVD/, test_DVD/' in proc.stderr


def test_flow_lmdb(tmp_path):
    src, out = str(tmp_path / 'src'), str(tmp_path / 'lmdb')
    make_tree(src, 'gopro', frames=3)
    lmdb_writer.convert_dataset(src, out, with_flow=True)
    flow = LmdbStore(osp.join(out, 'train', 'flow.lmdb'))
    assert flow.get_flow('s0', 0).shape == (20, 28, 2)
    assert (flow.get_flow('s0', 0) == 0).all()  # no previous frame


def test_interrupted_conversion_leaves_no_database(tmp_path, monkeypatch):
    src, out = str(tmp_path / 'src'), str(tmp_path / 'lmdb')
    make_tree(src, 'dvd')
    calls = []
    original = lmdb_writer.encode_png

    def crash(img):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt  # a crash half way
        return original(img)

    monkeypatch.setattr(lmdb_writer, 'encode_png', crash)
    with pytest.raises(KeyboardInterrupt):
        lmdb_writer.convert_dataset(src, out)
    assert not osp.exists(osp.join(out, 'train', 'blur.lmdb'))
    assert not osp.exists(osp.join(out, 'train', 'sharp.lmdb'))
    # a temp dir left by a hard kill is removed by the next run, which completes
    os.makedirs(osp.join(out, 'train', 'blur.lmdb.tmp-mtu99999-0'))
    monkeypatch.setattr(lmdb_writer, 'encode_png', original)
    lmdb_writer.convert_dataset(src, out)
    assert sorted(os.listdir(osp.join(out, 'train'))) == ['blur.lmdb', 'sharp.lmdb']


def _convert_error(src, tmp_path):
    proc = prewarmed.run([sys.executable, TOOL, src, str(tmp_path / 'out')],
                         capture_output=True, text=True)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    return proc.stderr


def test_missing_sharp_folder(tmp_path):
    src = str(tmp_path / 'src')
    make_tree(src, 'dvd')
    import shutil
    shutil.rmtree(osp.join(src, 'train', 's1', 'GT'))
    assert osp.join('s1', 'GT') in _convert_error(src, tmp_path)


def test_different_frame_counts(tmp_path):
    src = str(tmp_path / 'src')
    make_tree(src, 'gopro')
    os.remove(osp.join(src, 'train', 's0', 'sharp', '00005.png'))
    err = _convert_error(src, tmp_path)
    assert 's0' in err and '6 blurry frames' in err and '5 sharp' in err


def test_different_sizes(tmp_path):
    import cv2
    src = str(tmp_path / 'src')
    make_tree(src, 'reds')
    cv2.imwrite(osp.join(src, 'train_sharp', 's0', '00002.png'), np.zeros((10, 10, 3), np.uint8))
    assert osp.join('train_sharp', 's0', '00002.png') in _convert_error(src, tmp_path)


def test_frame_size_changing_within_a_sequence(tmp_path):
    import cv2
    src = str(tmp_path / 'src')
    make_tree(src, 'gopro')
    for side in ('blur_gamma', 'sharp'):
        cv2.imwrite(osp.join(src, 'test', 's1', side, '00003.png'), np.zeros((10, 12, 3),
                                                                             np.uint8))
    err = _convert_error(src, tmp_path)
    assert osp.join('test', 's1', 'blur_gamma', '00003.png') in err and 'one size' in err
    assert not osp.exists(str(tmp_path / 'out' / 'test' / 'blur.lmdb'))


def test_temp_database_of_a_running_conversion_is_kept(tmp_path):
    """Only temp folders of dead processes are stale: a concurrent writer's is left alone."""
    src, out = str(tmp_path / 'src'), str(tmp_path / 'lmdb')
    make_tree(src, 'reds', splits=('train',))
    live = osp.join(out, 'train', f'blur.lmdb.tmp-mtu{os.getppid()}-0')
    dead = osp.join(out, 'train', 'blur.lmdb.tmp-mtu999999999-0')
    os.makedirs(live)
    os.makedirs(dead)
    lmdb_writer.convert_dataset(src, out)
    assert osp.isdir(live) and not osp.exists(dead)


@pytest.mark.parametrize('bad', ['zero', 'garbage', 'rgba'])
def test_bad_images(tmp_path, bad):
    import cv2
    src = str(tmp_path / 'src')
    make_tree(src, 'gopro')
    path = osp.join(src, 'train', 's0', 'blur_gamma', '00001.png')
    if bad == 'zero':
        open(path, 'wb').close()
    elif bad == 'garbage':
        open(path, 'wb').write(b'not a png at all')
    else:
        cv2.imwrite(path, np.zeros((20, 28, 4), np.uint8))
    err = _convert_error(src, tmp_path)
    assert path in err
    assert {'zero': 'zero-byte', 'garbage': 'unreadable', 'rgba': 'RGBA'}[bad] in err


def test_gray_frames_are_converted(tmp_path):
    import cv2
    src, out = str(tmp_path / 'src'), str(tmp_path / 'out')
    make_tree(src, 'gopro', frames=2)
    gray = np.arange(20 * 28, dtype=np.uint8).reshape(20, 28)
    cv2.imwrite(osp.join(src, 'train', 's0', 'sharp', '00000.png'), gray)
    lmdb_writer.convert_dataset(src, out)
    got = decode_rgb(LmdbStore(osp.join(out, 'train', 'sharp.lmdb')).get('s0', 0), 'x')
    np.testing.assert_array_equal(got, np.repeat(gray[..., None], 3, 2))


def test_a_layout_that_finds_no_split_is_an_error(tmp_path):
    # --layout reds on a DVD tree converted nothing, said "done" and left an empty OUT
    src, out = str(tmp_path / 'DVD'), str(tmp_path / 'lmdb')
    make_tree(src, 'dvd', seqs=('s0',), frames=2)
    proc = prewarmed.run([sys.executable, TOOL, src, out, '--layout', 'reds'],
                         capture_output=True, text=True)
    assert proc.returncode == 1 and not osp.exists(out)
    assert proc.stderr.strip() == (f'error: {src}: no split of the reds layout with blurry and '
                                   'sharp frames (is it a reds tree? --layout auto detects it)')


def _exif_orientation(orientation):
    """An EXIF block (TIFF header, one IFD entry: Orientation) as JPEG's APP1 and PNG's eXIf
    carry it."""
    import struct
    return (b'MM\x00\x2a' + struct.pack('>I', 8) + struct.pack('>H', 1)
            + struct.pack('>HHIHH', 0x0112, 3, 1, orientation, 0) + struct.pack('>I', 0))


def _with_exif(encoded, ext, orientation):
    """``encoded`` JPEG/PNG bytes with an EXIF orientation added."""
    import struct
    import zlib
    exif = _exif_orientation(orientation)
    if ext == '.jpg':  # APP1 right after SOI
        app1 = b'Exif\x00\x00' + exif
        return encoded[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1 + encoded[2:]
    chunk = b'eXIf' + exif  # after IHDR (8-byte signature + 25-byte IHDR chunk)
    return (encoded[:33] + struct.pack('>I', len(exif)) + chunk
            + struct.pack('>I', zlib.crc32(chunk)) + encoded[33:])


@pytest.mark.parametrize('ext', ['.jpg', '.png'])
def test_frames_are_read_upright_as_the_inference_readers_read_them(tmp_path, ext):
    """A camera's portrait frames (EXIF orientation 6): the datasets, the converter and
    deblur_video's frame-folder reader all give the frames upright (as OpenCV's colour read
    and the reference implementation do), so a model is trained and scored on the frames it
    restores."""
    import cv2
    from mtu_toolkit.apis.video_io import FrameFolderReader
    from mtu_toolkit.datasets import VideoDeblurDataset
    src, out = str(tmp_path / 'src'), str(tmp_path / 'lmdb')
    make_tree(src, 'gopro', seqs=('s0',), frames=2, splits=('test',))
    for side in ('blur', 'sharp'):
        folder = side_dir(src, 'gopro', 'test', 's0', side)
        for name in os.listdir(folder):
            img = cv2.imread(osp.join(folder, name))
            os.remove(osp.join(folder, name))
            encoded = cv2.imencode(ext, img)[1].tobytes()
            with open(osp.join(folder, osp.splitext(name)[0] + ext), 'wb') as f:
                f.write(_with_exif(encoded, ext, 6))
    frame = osp.join(side_dir(src, 'gopro', 'test', 's0', 'blur'), '00000' + ext)
    upright = cv2.imread(frame, cv2.IMREAD_COLOR)[..., ::-1]
    assert upright.shape == (28, 20, 3)  # turned: the 20x28 frames are 28 rows high
    with open(frame, 'rb') as f:
        np.testing.assert_array_equal(decode_rgb(f.read(), frame), upright)
    reader = FrameFolderReader(osp.dirname(frame))
    np.testing.assert_array_equal(next(iter(reader)), upright)
    disk = VideoDeblurDataset(src, layout='gopro', split='test')[0]['inputs'][2]
    np.testing.assert_array_equal(disk.permute(1, 2, 0).numpy(), upright)
    lmdb_writer.convert_dataset(src, out)
    db = VideoDeblurDataset(out, backend='lmdb', split='test')[0]['inputs'][2]
    np.testing.assert_array_equal(db.permute(1, 2, 0).numpy(), upright)
