"""Blurry/sharp video pairs made from real footage, by the recipe of GoPro and DVD.

Blur is the average of consecutive sharp (sub-)frames in LINEAR RGB (inverse gamma, average,
gamma) and the sharp ground truth is the middle sub-frame. Two sources:

* ``blur_from_frames``: real footage (a video file or a frame folder), temporally up-sampled
  by flow interpolation first when its frame rate is too low for smooth averaging;
* ``render_camera_shake``: a high-resolution real photograph seen through a moving virtual
  camera (smooth random translation, rotation and zoom), rendered at sub-frame times.

``make_synthetic_dataset`` writes the DVD layout (``<out>/<split>/<seq>/{input,GT}/*.png``) so
the converter and the datasets treat it like any other dataset. The embedded default uses the
real photographs that scikit-image ships as files (no downloads; licences in the README).
"""
import os
import os.path as osp
import shutil

import cv2
import numpy as np

from .flow import sharp_flow

GAMMA = 2.2


def to_linear(rgb):
    """uint8 sRGB-like -> float32 linear RGB (gamma 2.2, as GoPro's recipe)."""
    return (rgb.astype(np.float32) / 255.) ** GAMMA


def to_display(lin):
    """float32 linear RGB -> uint8 gamma-encoded."""
    return np.clip(np.round(np.clip(lin, 0, 1) ** (1 / GAMMA) * 255.), 0, 255).astype(np.uint8)


def average_in_linear(frames):
    """Blurry frame from a list of (H, W, 3) uint8 sharp sub-frames."""
    return to_display(np.mean([to_linear(f) for f in frames], axis=0))


def interpolate_frames(a, b, steps):
    """``steps - 1`` frames between ``a`` and ``b`` by warping both along DIS flow."""
    h, w = a.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).astype(np.float32)
    flow_ab = sharp_flow(a, b)  # a(x) ~ b(x + flow)
    flow_ba = sharp_flow(b, a)
    out = []
    for k in range(1, steps):
        s = k / steps
        from_a = cv2.remap(a, *np.moveaxis(grid - s * flow_ab, -1, 0), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
        from_b = cv2.remap(b, *np.moveaxis(grid - (1 - s) * flow_ba, -1, 0), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
        out.append(to_display((1 - s) * to_linear(from_a) + s * to_linear(from_b)))
    return out


def blur_from_frames(frames, window=7, upsample=1):
    """(blur, sharp) lists from real footage: average ``window`` consecutive frames each.

    Args:
        frames (list): (H, W, 3) uint8 RGB frames in order.
        window (int): odd number of (up-sampled) frames averaged per blurry frame.
        upsample (int): temporal up-sampling factor (flow interpolation) for low frame rates.
    """
    if upsample > 1:
        dense = []
        for a, b in zip(frames[:-1], frames[1:]):
            dense += [a] + interpolate_frames(a, b, upsample)
        frames = dense + [frames[-1]]
    blur, sharp = [], []
    for start in range(0, len(frames) - window + 1, window):
        group = frames[start:start + window]
        blur.append(average_in_linear(group))
        sharp.append(group[window // 2])
    return blur, sharp


def smooth_path(rng, n, scale, smoothness=12):
    """A smooth random 1-D path of ``n`` samples (integrated low-passed noise), std ~ scale."""
    v = rng.normal(0, 1, n + 4 * smoothness)
    kernel = np.hanning(2 * smoothness + 1)
    v = np.convolve(v, kernel / kernel.sum(), mode='same')[2 * smoothness:2 * smoothness + n]
    return np.cumsum(v / (v.std() + 1e-8) * scale)


def render_camera_shake(photo, num_frames, size, rng, sub_frames=9, speed=1.2,
                        exposures=(1, 3, 5, 7, 9)):
    """(blur, sharp) frame lists of a virtual camera moving over a real photograph.

    Args:
        photo (ndarray): (H, W, 3) uint8 RGB, larger than ``size``.
        num_frames (int): output frames.
        size (tuple): (h, w) of the frames.
        rng (np.random.Generator): randomness of the path and the exposures.
        sub_frames (int): sub-frames rendered per frame interval.
        speed (float): pixels per sub-frame of the translation (std).
        exposures (tuple): sub-frames averaged per frame, drawn per frame, so that blur varies
            along the video (sharp frames among blurry ones, as in handheld footage).
    """
    h, w = size
    ph, pw = photo.shape[:2]
    n = num_frames * sub_frames
    margin = 0.5 * np.hypot(h, w) + 2
    cx = pw / 2 + np.clip(smooth_path(rng, n, speed), -(pw / 2 - margin), pw / 2 - margin)
    cy = ph / 2 + np.clip(smooth_path(rng, n, speed), -(ph / 2 - margin), ph / 2 - margin)
    angle = smooth_path(rng, n, 0.05)        # degrees per sub-frame
    zoom = np.exp(smooth_path(rng, n, 0.001))
    linear = to_linear(photo)

    def view(i):
        m = cv2.getRotationMatrix2D((float(cx[i]), float(cy[i])), float(angle[i]), float(zoom[i]))
        m[:, 2] += (w / 2 - cx[i], h / 2 - cy[i])
        return cv2.warpAffine(linear, m, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    blur, sharp = [], []
    for t in range(num_frames):
        e = int(rng.choice(exposures))
        start = t * sub_frames + (sub_frames - e) // 2
        views = [view(i) for i in range(start, start + e)]
        blur.append(to_display(np.mean(views, axis=0)))
        sharp.append(to_display(views[e // 2]))
    return blur, sharp


def read_footage(path, max_frames=None):
    """RGB frames of a video file or a frame folder (sorted), with a clear error."""
    if osp.isdir(path):
        from .layouts import list_frames
        from .frame_io import decode_rgb, read_file
        names = list_frames(path)[:max_frames]
        return [decode_rgb(read_file(osp.join(path, n)), osp.join(path, n)) for n in names]
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise ValueError(f'{path}: cannot open as a video (or it is not a frame folder)')
    frames = []
    while max_frames is None or len(frames) < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(bgr[..., ::-1]))
    cap.release()
    if not frames:
        raise ValueError(f'{path}: no frames could be decoded')
    return frames


def write_dvd_sequence(root, split, seq, blur, sharp):
    for sub, frames in (('input', blur), ('GT', sharp)):
        d = osp.join(root, split, seq, sub)
        os.makedirs(d, exist_ok=True)
        for i, f in enumerate(frames):
            cv2.imwrite(osp.join(d, f'{i:05d}.png'), np.ascontiguousarray(f[..., ::-1]))


def skimage_photos():
    """{name: RGB uint8} of the real photographs scikit-image ships as files (see README)."""
    from skimage import data
    return {name: getattr(data, name)()
            for name in ('astronaut', 'coffee', 'chelsea', 'rocket', 'hubble_deep_field')}


def make_synthetic_dataset(out, splits, num_frames=24, size=(144, 192), seed=0, **render):
    """Render camera-shake sequences into a DVD-layout tree, atomically.

    Args:
        out (str): output root; written as ``<out>.tmp`` and renamed when complete.
        splits (dict): {split: [(seq_name, photo RGB uint8), ...]}.
        num_frames, size, seed: see :func:`render_camera_shake`; ``render`` passes the rest.

    Returns:
        str: ``out``.
    """
    tmp = out + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for split, items in splits.items():
        for seq, photo in items:
            if photo.ndim != 3 or photo.shape[2] != 3:
                raise ValueError(f'{seq}: the photograph must be RGB, got shape {photo.shape}')
            blur, sharp = render_camera_shake(photo, num_frames, size, rng, **render)
            write_dvd_sequence(tmp, split, seq, blur, sharp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out
