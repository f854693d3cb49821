"""Saves restored test frames as PNG files: ``<out_dir>/<sequence>/<frame:05d>.png``."""
import os
import os.path as osp
import shutil

import cv2
from mmengine.dist import barrier, broadcast_object_list, is_main_process
from mmengine.hooks import Hook

from ...fileio import (check_writable_folder, folder_target, remove_stale_temporaries,
                       swap_in_folder, temporary_path)
from ...registry import HOOKS


def check_frames_folder(path, overwrite=False, inputs=()):
    """Refuse, before any work, a folder of restored frames that would replace the user's
    files or could not be written: one line naming ``path``.

    Args:
        path (str): the folder.
        overwrite (bool): let a folder that holds files be replaced.
        inputs (list[str]): what the test reads or writes (checkpoint, config, work dir, data),
            which the folder may neither be nor hold, even with ``overwrite``.

    Raises:
        ValueError: ``path`` is a file or a mount point; it is or holds one of ``inputs``; it
            holds files (without ``overwrite``); or its nearest existing parent is not
            writable.
    """
    if osp.exists(path) and not osp.isdir(path):
        raise ValueError(f'{path}: is a file; give a folder for the restored frames')
    target = folder_target(osp.normpath(path))
    if osp.isdir(target) and osp.ismount(target):
        raise ValueError(f'{path}: is a mount point, which the finished folder cannot '
                         'replace; give a folder inside it')
    for found in inputs:
        real = osp.realpath(found) if found else None
        if real and (real == target or real.startswith(target.rstrip(os.sep) + os.sep)):
            raise ValueError(f'{path}: holds {found}, which this test reads or writes; give '
                             'another folder')
    if osp.isdir(target) and os.listdir(target) and not overwrite:
        raise ValueError(f'{path}: holds files (restored frames of an earlier test?); pass '
                         '--overwrite to replace it, or give a new folder')
    parent = osp.dirname(target)
    while not osp.isdir(parent):
        parent = osp.dirname(parent)
    check_writable_folder(path, parent)


@HOOKS.register_module()
class SaveRestoredFramesHook(Hook):
    """Write every restored frame of the test run (the restorer's ``predict`` outputs).

    Frames are named by their index in the sequence (``frame_indices``) and written into a
    temporary folder beside ``out_dir`` (``<out_dir>.tmp-mtu<pid>-<n>``; in a distributed test
    one folder, named by rank 0, that every rank fills), which replaces ``out_dir`` when the
    test ends: an interrupted or failed test leaves no folder that looks like a whole result,
    and ``out_dir`` is replaced only whole. A folder a killed run left is removed by the next.

    Args:
        out_dir (str): root folder; one sub-folder per sequence.
        overwrite (bool): let a folder that holds files be replaced (tools/test.py checks
            that before any work; checked again when the frames are put in place).
    """
    priority = 'NORMAL'

    def __init__(self, out_dir, overwrite=False):
        # a link to a folder ('results/' too): the folder it points to is replaced, the link
        # kept
        self.out_dir = folder_target(osp.normpath(out_dir))
        self.overwrite = overwrite
        self.tmp = None
        self.placed = False  # the frames are in out_dir

    def before_test(self, runner=None):
        name = [None]
        if is_main_process():
            remove_stale_temporaries(self.out_dir)
            name = [temporary_path(self.out_dir)]
        broadcast_object_list(name)  # (nothing to do without a process group)
        self.tmp = name[0]
        if is_main_process():
            os.makedirs(self.tmp)
        barrier()

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for i, out in enumerate(outputs or []):
            seq_dir = osp.join(self.tmp, str(out.get('key', f'batch{batch_idx}_{i}')))
            os.makedirs(seq_dir, exist_ok=True)
            pred = out['pred'].float().clamp(0, 1).mul(255).round().byte()  # (T, 3, H, W)
            indices = out.get('frame_indices', range(pred.shape[0]))
            for frame, idx in zip(pred, indices):
                path = osp.join(seq_dir, f'{int(idx):05d}.png')
                ok, buf = cv2.imencode('.png', frame.permute(1, 2, 0).numpy()[..., ::-1])
                if not ok:
                    raise RuntimeError(f'could not encode restored frame {path}')
                with open(path, 'wb') as f:
                    f.write(buf.tobytes())

    def after_test(self, runner=None):
        """Every rank's frames are written: the folder replaces ``out_dir`` (rank 0)."""
        barrier()
        if not is_main_process():
            return
        if osp.isdir(self.out_dir) and os.listdir(self.out_dir) and not self.overwrite:
            self.abort()
            raise ValueError(f'{self.out_dir}: another run filled it while this one ran; it was '
                             'not replaced (--overwrite replaces it)')
        aside = swap_in_folder(self.tmp, self.out_dir)
        self.tmp, self.placed = None, True
        if aside:
            shutil.rmtree(aside, ignore_errors=True)

    def abort(self):
        """Remove the frames written so far (an interrupted or failed test)."""
        if self.tmp is not None and is_main_process():
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp = None
