"""Decoding frames to RGB uint8 with clear errors (zero-byte, unreadable, gray/RGBA)."""
import cv2
import numpy as np


def decode_rgb(buf, where):
    """PNG/JPEG bytes -> (H, W, 3) uint8 RGB. Gray frames are expanded, RGBA refused.

    Args:
        buf (bytes): encoded image.
        where (str): file or key named in errors.
    """
    if not buf:
        raise ValueError(f'{where}: zero-byte image')
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f'{where}: unreadable image (not a valid PNG/JPEG)')
    if img.dtype != np.uint8:
        raise ValueError(f'{where}: {img.dtype} image; only 8-bit frames are supported')
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)  # gray: converted, as the datasets are RGB
    elif img.shape[2] == 4:
        raise ValueError(f'{where}: RGBA frame; remove the alpha channel first (a video '
                         'deblurring dataset has no transparency to keep)')
    return np.ascontiguousarray(img[..., ::-1])


def read_file(path):
    with open(path, 'rb') as f:
        return f.read()


def encode_png(rgb):
    """(H, W, 3) uint8 RGB -> lossless PNG bytes."""
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError('PNG encoding failed')
    return buf.tobytes()
