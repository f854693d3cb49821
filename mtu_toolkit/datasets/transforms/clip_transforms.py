"""Transforms applied identically to every frame of a clip, blur and sharp alike (mmcv style).

Each takes and returns a ``results`` dict with ``inputs`` (T+4, H, W, 3) blurry frames, ``gt``
(T, H, W, 3) sharp frames and optionally ``flow`` (T, H, W, 2) float (dx, dy) in pixels from
sharp frame t to t-1. Geometric transforms move the flow field AND turn its vectors.
Randomness comes from numpy's global RNG, which mmengine seeds per worker.
"""
import numpy as np
from mmcv.transforms import BaseTransform

from ...checked_registry import ComponentArgumentError
from ...registry import TRANSFORMS
from ..errors import DatasetError

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
        if len(self.size) != 2 or not all(isinstance(s, int) and s >= 1 for s in self.size):
            raise ComponentArgumentError(f'ClipRandomCrop: size must be a positive integer or '
                                         f'(h, w) of them, got {size!r}')

    def transform(self, results):
        h, w = results['gt'].shape[1:3]
        ch, cw = self.size
        if h < ch or w < cw:
            raise DatasetError(f"ClipRandomCrop: crop {ch}x{cw} larger than frames {h}x{w} of "
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
    """Flip every frame of the clip the same way.

    Args:
        prob (float): with ``choice_probs`` None, each of the horizontal and the vertical flip
            happens with this probability, independently; otherwise the probability that the
            clip is flipped at all. Default 0.5.
        choice_probs (tuple[float] | None): (vertical, horizontal, both) probabilities of
            the flip when there is one, e.g. the reference implementation's (0.3, 0.3, 0.4).
    """

    def __init__(self, prob=0.5, choice_probs=None):
        self.prob = prob
        self.choice_probs = _probs(choice_probs, 3, 'ClipRandomFlip')

    def transform(self, results):
        if self.choice_probs is None:
            flips = (np.random.rand() < self.prob, np.random.rand() < self.prob)
        elif np.random.rand() < self.prob:
            kind = np.random.choice(3, p=self.choice_probs)  # vertical, horizontal, both
            flips = (kind in (1, 2), kind in (0, 2))
        else:
            flips = (False, False)
        if flips[0]:
            _apply(results, lambda a: a[:, :, ::-1], _negate(0))
        if flips[1]:
            _apply(results, lambda a: a[:, ::-1], _negate(1))
        return results


def _probs(probs, n, name):
    if probs is None:
        return None
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (n,) or (probs < 0).any() or not np.isclose(probs.sum(), 1):
        raise ValueError(f'{name}: choice_probs must be {n} probabilities adding up to 1, '
                         f'got {probs.tolist()}')
    return probs


def rot90_flow_vectors(flow, k):
    """Turn (dx, dy) vectors as ``np.rot90(image, k)`` turns the image: (dx, dy) -> (dy, -dx)."""
    for _ in range(k % 4):
        flow = np.stack((flow[..., 1], -flow[..., 0]), -1)
    return flow


@TRANSFORMS.register_module()
class ClipRandomRot90(BaseTransform):
    """With probability ``prob``, rotate every frame by the same multiple of 90 degrees.

    Args:
        prob (float): probability of a rotation. Default 0.5.
        choice_probs (tuple[float] | None): probabilities of (90 counter-clockwise, 90
            clockwise, 180); None: uniform. The reference implementation's (0.3, 0.3, 0.4).
    """

    def __init__(self, prob=0.5, choice_probs=None):
        self.prob = prob
        self.choice_probs = _probs(choice_probs, 3, 'ClipRandomRot90')

    def transform(self, results):
        if np.random.rand() < self.prob:
            if self.choice_probs is None:
                k = np.random.randint(1, 4)
            else:  # np.rot90's k: 1 = 90 counter-clockwise, 3 = 90 clockwise, 2 = 180
                k = (1, 3, 2)[np.random.choice(3, p=self.choice_probs)]
            _apply(results, lambda a: np.rot90(a, k, axes=(1, 2)),
                   lambda f: rot90_flow_vectors(f, k))
        return results


@TRANSFORMS.register_module()
class ClipGaussianNoise(BaseTransform):
    """Add N(0, sigma^2) noise (in [0, 1] units); the noised frames become float32.

    Args:
        sigma (float): standard deviation. Default 1e-4.
        prob (float): probability that a frame gets noise. With ``per_frame`` each frame
            decides on its own, and a target frame's blurry and sharp images share the decision
            (independent noise), as the reference implementation; otherwise the whole clip.
            Default 1.0.
        keys (tuple[str]): which arrays: 'inputs' (blurry) and/or 'gt' (sharp).
            Default ('inputs',).
        per_frame (bool): see ``prob``. Default False.
        clip (bool): clip the result to [0, 1] (the reference does). Default False.
    """

    def __init__(self, sigma=1e-4, prob=1.0, keys=('inputs',), per_frame=False, clip=False):
        unknown = set(keys) - set(_IMAGES)
        if unknown:
            raise ValueError(f'ClipGaussianNoise: keys must be among {_IMAGES}, got {keys}')
        self.sigma, self.prob, self.keys = sigma, prob, tuple(keys)
        self.per_frame, self.clip = per_frame, clip

    def transform(self, results):
        num_inputs = results['inputs'].shape[0]
        context = (num_inputs - results['gt'].shape[0]) // 2  # frames of context each side
        if self.prob >= 1:
            noisy = np.ones(num_inputs, bool)
        elif self.per_frame:
            noisy = np.random.rand(num_inputs) < self.prob  # per input position
        else:
            noisy = np.full(num_inputs, np.random.rand() < self.prob)
        for key in self.keys:
            x = results[key]
            x = x.astype(np.float32) / 255. if x.dtype == np.uint8 else x.astype(np.float32)
            mask = noisy if key == 'inputs' else noisy[context:num_inputs - context]
            if mask.any():
                noise = np.random.normal(0, self.sigma, x[mask].shape).astype(np.float32)
                x[mask] = x[mask] + noise
                if self.clip:
                    np.clip(x, 0, 1, out=x)
            results[key] = x
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
