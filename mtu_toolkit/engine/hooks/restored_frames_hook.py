"""Saves restored test frames as PNG files: ``<out_dir>/<sequence>/<frame:05d>.png``."""
import os
import os.path as osp

import cv2
from mmengine.hooks import Hook

from ...fileio import temporary_path
from ...registry import HOOKS


@HOOKS.register_module()
class SaveRestoredFramesHook(Hook):
    """Write every restored frame of the test run (the restorer's ``predict`` outputs).

    Frames are named by their index in the sequence (``frame_indices``), written through a
    temporary name and renamed, so a crash never leaves a truncated PNG.

    Args:
        out_dir (str): root folder; one sub-folder per sequence.
    """
    priority = 'NORMAL'

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for i, out in enumerate(outputs or []):
            seq_dir = osp.join(self.out_dir, str(out.get('key', f'batch{batch_idx}_{i}')))
            os.makedirs(seq_dir, exist_ok=True)
            pred = out['pred'].float().clamp(0, 1).mul(255).round().byte()  # (T, 3, H, W)
            indices = out.get('frame_indices', range(pred.shape[0]))
            for frame, idx in zip(pred, indices):
                path = osp.join(seq_dir, f'{int(idx):05d}.png')
                ok, buf = cv2.imencode('.png', frame.permute(1, 2, 0).numpy()[..., ::-1])
                if not ok:
                    raise RuntimeError(f'could not encode restored frame {path}')
                tmp = temporary_path(path)
                with open(tmp, 'wb') as f:
                    f.write(buf.tobytes())
                os.replace(tmp, path)
