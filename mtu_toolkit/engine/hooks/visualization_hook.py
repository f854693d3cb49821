"""Validation strips: blurry | restored | sharp, side by side, through the runner's visualizer."""
import cv2
import numpy as np
import torch
from mmengine.hooks import Hook

from ...models.window import CONTEXT
from ...registry import HOOKS


def panel_row(panels, labels=None, gap=4):
    """(3, H, W) float images in [0, 1] side by side -> one uint8 (H, nW + gaps, 3) RGB image,
    white gaps between them; ``labels`` (one string a panel) are written in each panel's
    top-left corner (white on a dark box, readable on any content)."""
    h = panels[0].shape[-2]
    spacer = torch.ones(3, h, gap)
    row = [panels[0]]
    for p in panels[1:]:
        row += [spacer, p]
    strip = torch.cat([p.float().cpu().clamp(0, 1) for p in row], dim=2)
    image = np.ascontiguousarray(strip.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    x = 0
    for panel, label in zip(panels, labels or []):
        scale = max(0.3, min(0.5, panel.shape[-1] / 400))
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(image, (x, 0), (x + tw + 6, th + base + 5), (0, 0, 0), -1)
        cv2.putText(image, label, (x + 3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
        x += panel.shape[-1] + gap
    return image


def make_strip(blurry, restored, sharp=None, gap=4, labels=None):
    """Three (3, H, W) float images in [0, 1] -> one uint8 (H, 3W + gaps, 3) RGB strip.

    ``sharp`` may be None (no ground truth): the strip then has two panels. ``labels``: see
    :func:`panel_row`.
    """
    return panel_row([p for p in (blurry, restored, sharp) if p is not None], labels, gap)


@HOOKS.register_module()
class VideoVisualizationHook(Hook):
    """At validation, show blurry | restored | sharp for a frame of the first sequences.

    Images go to the runner's visualizer, i.e. to every configured vis backend (the local one
    writes ``<work_dir>/<timestamp>/vis_data/vis_image/<name>_<iter>.png``; TensorBoard shows
    them when enabled). Names are ``val_<sequence>_<frame>`` (no slashes: the local backend
    writes flat files).

    Args:
        max_sequences (int): sequences shown per validation run. Default 2.
        frame (int | None): index (within each validated clip) of the frame shown;
            None takes the middle one.
    """
    priority = 'NORMAL'

    def __init__(self, max_sequences=2, frame=None):
        self.max_sequences = max_sequences
        self.frame = frame
        self._shown = 0

    def before_val_epoch(self, runner):
        self._shown = 0

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not outputs or self._shown >= self.max_sequences:
            return
        inputs = data_batch['inputs']  # (B, T+4, 3, H, W) uint8 or float
        for i, out in enumerate(outputs):
            if self._shown >= self.max_sequences:
                break
            pred = out['pred']
            t = pred.shape[0] // 2 if self.frame is None else min(self.frame, pred.shape[0] - 1)
            blurry = inputs[i, t + CONTEXT]  # the targets follow the left context
            blurry = blurry.float() / 255 if blurry.dtype == torch.uint8 else blurry
            strip = make_strip(blurry, pred[t], out['gt'][t] if 'gt' in out else None)
            frame_idx = out['frame_indices'][t] if 'frame_indices' in out else t
            runner.visualizer.add_image(f"val_{out.get('key', i)}_{frame_idx}", strip,
                                        step=runner.iter)
            self._shown += 1
