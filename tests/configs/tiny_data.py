"""Tiny generated video data and configs for the end-to-end tests of the tools.

``make_dvd_tree(root)`` writes a DVD-layout folder dataset (``<root>/{train,test}/<video>/
{input,GT}/<frame>.png``, 2 videos x 6 frames x 32x32). ``write_config(path, data_root, **over)``
writes a config that inherits the real ``_base_`` pieces (model, schedule, runtime) with MTU1,
8 channels, 1 residual block, 3-frame clips, read by :class:`TinyDVDDataset` (a minimal reader
that follows the toolkit's dataset sample contract, so these tests do not depend on the
datasets package).
"""
import os
import os.path as osp

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mtu_toolkit.registry import DATASETS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASE = osp.join(ROOT, 'configs', '_base_')
CONTEXT = 2


def make_dvd_tree(root, videos=2, frames=6, size=(32, 32), seed=0):
    """Smooth random frames and box-blurred inputs in the DVD layout; returns ``root``."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split in ('train', 'test'):
        for v in range(videos):
            base = cv2.resize(rng.random((h // 4, w // 4, 3)).astype(np.float32), (w + 8, h))
            for f in range(frames):
                sharp = np.roll(base, f, axis=1)[:, :w]  # a sequence panning by 1 px per frame
                blur = cv2.blur(sharp, (5, 1))
                for sub, img in (('GT', sharp), ('input', blur)):
                    d = osp.join(root, split, f'video{v}', sub)
                    os.makedirs(d, exist_ok=True)
                    cv2.imwrite(osp.join(d, f'{f:05d}.png'),
                                (img[..., ::-1] * 255).round().astype(np.uint8))
    return root


def _read(path):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'cannot read {path}')
    return torch.from_numpy(np.ascontiguousarray(img[..., ::-1])).permute(2, 0, 1)


@DATASETS.register_module(force=True)
class TinyDVDDataset(Dataset):
    """DVD-layout folder reader: random ``num_frames`` clips (train) or whole videos (test)."""

    def __init__(self, data_root, split='train', num_frames=None, length=8):
        self.dir = osp.join(data_root, split)
        self.videos = sorted(os.listdir(self.dir))
        self.num_frames, self.length = num_frames, length
        self.metainfo = dict(videos=self.videos)

    def __len__(self):
        return self.length if self.num_frames else len(self.videos)

    def __getitem__(self, i):
        video = self.videos[i % len(self.videos)]
        names = sorted(os.listdir(osp.join(self.dir, video, 'GT')))
        n = len(names)
        if self.num_frames:
            start = np.random.randint(0, n - self.num_frames + 1)
            idx = list(range(start, start + self.num_frames))
        else:
            idx = list(range(n))
        ctx = [min(max(j, 0), n - 1) for j in range(idx[0] - CONTEXT, idx[-1] + CONTEXT + 1)]
        blur = torch.stack([_read(osp.join(self.dir, video, 'input', names[j])) for j in ctx])
        gt = torch.stack([_read(osp.join(self.dir, video, 'GT', names[j])) for j in idx])
        # a known motion for the motion loss: the sharp frames move 1 px right a frame
        flow = torch.zeros(len(idx), 2, *gt.shape[-2:])
        flow[:, 0] = -1.0
        return dict(inputs=blur, data_samples=dict(gt=gt, key=video, frame_indices=idx,
                                                   flow=flow))


def write_config(path, data_root, max_iters=4, val_interval=2, ckpt_interval=2, **extra):
    """A tiny training/testing config on the real base pieces; returns ``path``."""
    lines = [
        f"_base_ = [{osp.join(BASE, 'models', 'mtu.py')!r}, "
        f"{osp.join(BASE, 'schedules', 'mtu_schedule.py')!r}, "
        f"{osp.join(BASE, 'default_runtime.py')!r}]",
        "custom_imports = dict(imports=['tiny_data'], allow_failed_imports=False)",
        "model = dict(backbone=dict(num_units=1, channels=8, num_blocks=1, "
        "mc_head=dict(max_displacement=3)))",
        "_loader = dict(num_workers=0, collate_fn=dict(type='default_collate'))",
        f"train_dataloader = dict(_loader, batch_size=2, sampler=dict(type='InfiniteSampler', "
        f"shuffle=True), dataset=dict(type='TinyDVDDataset', data_root={data_root!r}, "
        f"num_frames=3))",
        f"val_dataloader = dict(_loader, batch_size=1, sampler=dict(type='DefaultSampler', "
        f"shuffle=False), dataset=dict(type='TinyDVDDataset', data_root={data_root!r}, "
        f"split='test'))",
        "test_dataloader = val_dataloader",
        f"train_cfg = dict(max_iters={max_iters}, val_interval={val_interval})",
        f"default_hooks = dict(logger=dict(interval=1), "
        f"checkpoint=dict(interval={ckpt_interval}, max_keep_ckpts=2))",
    ]
    lines += [f'{k} = {v!r}' for k, v in extra.items()]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def tool_env():
    """Environment for running the tools in a subprocess: the tiny dataset importable."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([osp.dirname(osp.abspath(__file__)), ROOT,
                                         env.get('PYTHONPATH', '')])
    env.setdefault('OMP_NUM_THREADS', '1')
    return env


def interruptible():
    """``preexec_fn`` of a subprocess a test sends SIGINT: its SIGINT back to the default. A
    job started in the background of a non-interactive shell (a CI script's ``cmd &``) has
    SIGINT ignored, its children inherit that, and Python then never raises
    KeyboardInterrupt: the test would see the tool run to its end."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def file_size_limit(limit):
    """``preexec_fn`` of a subprocess: its files may not grow past ``limit`` bytes (EFBIG, a
    full disk to the writer), and SIGXFSZ, which would kill it, is ignored."""
    def set_limit():
        import resource
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return set_limit
