"""Transforms applied identically to every frame of a clip, blur and sharp alike (mmcv style).

Each takes and returns a ``results`` dict with ``inputs`` (T+4, H, W, 3) blurry frames, ``gt``
(T, H, W, 3) sharp frames and optionally ``flow`` (T, H, W, 2) float (dx, dy) in pixels from
sharp frame t to t-1. Geometric transforms move the flow field AND turn its vectors.
Randomness comes from numpy's global RNG, which mmengine seeds per worker.
"""
import numpy as np
from mmcv.transforms import BaseTransform

from ...registry import TRANSFORMS

_IMAGES = ('inputs', 'gt')


def _apply(results, fn, flow_fn=None):
    for key in _IMAGES:
        results[key] = np.ascontiguousarray(fn(results[key]))
    if 'flow' in results:
        flow = np.ascontiguousarray(fn(results['flow']))
        results['flow'] = flow_fn(flow) if flow_fn else flow
    return results


@TRANSFORMS.register_module()
class ClipRandomCrop(BaseTransform):
    """Crop the same (size x size) window from every frame.

    Args:
        size (int | tuple): (h, w) of the crop; frames smaller than it are an error.
    """

    def __init__(self, size):
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def transform(self, results):
        h, w = results['gt'].shape[1:3]
        ch, cw = self.size
        if h < ch or w < cw:
            raise ValueError(f"ClipRandomCrop: crop {ch}x{cw} larger than frames {h}x{w} of "
                             f"{results.get('key', '?')}")
        y, x = np.random.randint(0, h - ch + 1), np.random.randint(0, w - cw + 1)
        return _apply(results, lambda a: a[:, y:y + ch, x:x + cw])


def _negate(channel):
    def fn(flow):
        flow = flow.copy()
        flow[..., channel] *= -1
        return flow
    return fn


@TRANSFORMS.register_module()
class ClipRandomFlip(BaseTransform):
    """Horizontal and vertical flips, each with probability ``prob``."""

    def __init__(self, prob=0.5):
        self.prob = prob

    def transform(self, results):
        if np.random.rand() < self.prob:
            _apply(results, lambda a: a[:, :, ::-1], _negate(0))
        if np.random.rand() < self.prob:
            _apply(results, lambda a: a[:, ::-1], _negate(1))
        return results


def rot90_flow_vectors(flow, k):
    """Turn (dx, dy) vectors as ``np.rot90(image, k)`` turns the image: (dx, dy) -> (dy, -dx)."""
    for _ in range(k % 4):
        flow = np.stack((flow[..., 1], -flow[..., 0]), -1)
    return flow


@TRANSFORMS.register_module()
class ClipRandomRot90(BaseTransform):
    """With probability ``prob``, rotate by 90, 180 or 270 degrees (chosen uniformly)."""

    def __init__(self, prob=0.5):
        self.prob = prob

    def transform(self, results):
        if np.random.rand() < self.prob:
            k = np.random.randint(1, 4)
            _apply(results, lambda a: np.rot90(a, k, axes=(1, 2)),
                   lambda f: rot90_flow_vectors(f, k))
        return results


@TRANSFORMS.register_module()
class ClipGaussianNoise(BaseTransform):
    """Add N(0, sigma^2) noise to the blurry frames (in [0, 1] units); they become float32."""

    def __init__(self, sigma=1e-4):
        self.sigma = sigma

    def transform(self, results):
        x = results['inputs'].astype(np.float32) / 255.
        results['inputs'] = x + np.random.normal(0, self.sigma, x.shape).astype(np.float32)
        return results


@TRANSFORMS.register_module()
class ClipCropToMultiple(BaseTransform):
    """Crop every frame top-left to the largest size that is a multiple of ``multiple``.

    Keeps rows ``0 .. H - H % multiple`` and columns ``0 .. W - W % multiple`` of the blurry
    inputs, the sharp frames and the flow (whose vectors a crop does not change). The reference
    implementation evaluates frames cropped so (with 4) instead of padding them; the
    ``reference`` and ``matlab`` evaluation protocols put this transform in the test pipeline.
    A no-op for 1280x720 frames.
    """

    def __init__(self, multiple=4):
        if int(multiple) < 1:
            raise ValueError(f'ClipCropToMultiple: multiple must be >= 1, got {multiple}')
        self.multiple = int(multiple)

    def transform(self, results):
        h, w = results['gt'].shape[1:3]
        ch, cw = h - h % self.multiple, w - w % self.multiple
        if not (ch and cw):
            raise ValueError(f"ClipCropToMultiple: frames {h}x{w} of {results.get('key', '?')} "
                             f'are smaller than {self.multiple}')
        if (ch, cw) == (h, w):
            return results
        return _apply(results, lambda a: a[:, :ch, :cw])
