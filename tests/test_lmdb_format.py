"""The on-disk LMDB format checked independently of the toolkit's reader (raw ``lmdb``: exact
keys, values and ``meta_info.txt`` lines), and a database written the way BasicSR writes its
own, read by the toolkit."""
import os
import os.path as osp

import cv2
import lmdb
import numpy as np
import torch

from data_trees import make_tree
from mtu_toolkit.datasets import VideoDeblurDataset
from mtu_toolkit.datasets.lmdb_writer import convert_dataset


def test_converted_lmdb_layout_read_with_raw_lmdb(tmp_path):
    written = make_tree(str(tmp_path / 'src'), 'gopro', seqs=('a', 'b10', 'b9'), frames=3,
                        size=(12, 20))
    out = str(tmp_path / 'out')
    convert_dataset(str(tmp_path / 'src'), out, 'gopro')
    assert sorted(os.listdir(out)) == ['test', 'train']
    for split in ('train', 'test'):
        for side in ('blur', 'sharp'):
            path = osp.join(out, split, f'{side}.lmdb')
            assert sorted(os.listdir(path)) == ['data.mdb', 'lock.mdb', 'meta_info.txt']
            with open(osp.join(path, 'meta_info.txt')) as f:
                assert f.read() == 'a 3 (12,20,3)\nb10 3 (12,20,3)\nb9 3 (12,20,3)\n'
            env = lmdb.open(path, readonly=True, lock=False)
            with env.begin() as txn:
                keys = [k.decode() for k, _ in txn.cursor()]
                assert keys == [f'{s}/{i:08d}' for s in ('a', 'b10', 'b9') for i in range(3)]
                for seq in ('a', 'b10', 'b9'):
                    for i in range(3):
                        buf = txn.get(f'{seq}/{i:08d}'.encode())
                        assert buf[:8] == b'\x89PNG\r\n\x1a\n'  # lossless PNG
                        img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
                        np.testing.assert_array_equal(img[..., ::-1],
                                                      written[(split, seq, side)][i])
            env.close()


def write_basicsr_lmdb(path, frames):
    """An LMDB as BasicSR's ``make_lmdb_from_imgs`` writes it (written here from its format,
    not with the toolkit's writer): key ``<seq>/<frame:08d>``, a PNG at compression level 1,
    and a meta_info.txt line per frame ``<key>.png (h,w,c) 1``."""
    env = lmdb.open(path, map_size=1 << 30)
    lines = []
    with env.begin(write=True) as txn:
        for seq, imgs in frames.items():
            for i, img in enumerate(imgs):
                key = f'{seq}/{i:08d}'
                ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                assert ok
                txn.put(key.encode('ascii'), buf.tobytes())
                h, w, c = img.shape
                lines.append(f'{key}.png ({h},{w},{c}) 1\n')
    env.close()
    with open(osp.join(path, 'meta_info.txt'), 'w') as f:
        f.writelines(lines)


def test_reads_a_database_written_the_way_basicsr_writes_its_own(tmp_path):
    rng = np.random.default_rng(0)
    blur = {s: [rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(5)]
            for s in ('000', '001')}
    sharp = {s: [rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(5)]
             for s in ('000', '001')}
    write_basicsr_lmdb(str(tmp_path / 'train_blur.lmdb'), blur)
    write_basicsr_lmdb(str(tmp_path / 'train_sharp.lmdb'), sharp)
    ds = VideoDeblurDataset(str(tmp_path), split='train', backend='lmdb',
                            blur_lmdb=str(tmp_path / 'train_blur.lmdb'),
                            sharp_lmdb=str(tmp_path / 'train_sharp.lmdb'))
    assert ds.seqs == {'000': 5, '001': 5}
    sample = ds[1]  # whole sequence '001' with its clamped context
    assert sample['data_samples']['key'] == '001'
    gt = sample['data_samples']['gt'].permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(gt, np.stack(sharp['001'])[..., ::-1])  # BGR on disk
    inputs = sample['inputs'].permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(inputs[2:-2], np.stack(blur['001'])[..., ::-1])
    assert torch.equal(sample['inputs'][0], sample['inputs'][2])  # clamped at the start
