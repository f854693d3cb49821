"""Frames on disk: the one frame-folder listing (natural order, one list of extensions) and
decoding to RGB uint8 with clear errors (zero-byte, unreadable, gray/RGBA)."""
import os
import os.path as osp
import re

import cv2
import numpy as np

from .errors import DatasetError

#: image extensions read as frames (datasets, frame-folder videos): what OpenCV decodes
FRAME_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm',
              '.pnm')


def natural_key(name):
    """Sort key putting 'frame10.png' after 'frame9.png' (and 10.png after 9.png)."""
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r'(\d+)', name)]


def list_frame_files(folder):
    """The image file names of a frame folder in natural order ([] when it holds none).

    Raises:
        FileNotFoundError: the folder does not exist.
    """
    if not osp.isdir(folder):
        raise FileNotFoundError(f'frame folder {folder} does not exist')
    return sorted((n for n in os.listdir(folder)
                   if n.lower().endswith(FRAME_EXTS) and not n.startswith('.')
                   and not osp.isdir(osp.join(folder, n))),  # a folder named like a frame
                  key=natural_key)


def frame_stem(name):
    """The name a frame pairs by across folders: the file name without its extension."""
    return osp.splitext(name)[0]


def decode_rgb(buf, where):
    """PNG/JPEG bytes -> (H, W, 3) uint8 RGB. Gray frames are expanded, RGBA refused.

    An EXIF orientation (a camera's portrait frames) is applied, as OpenCV's ``IMREAD_COLOR``
    applies it: the frames a model trains and is scored on are the frames the inference
    readers (``cv2.imread``) and the reference implementation give it, upright.

    Args:
        buf (bytes): encoded image.
        where (str): file or key named in errors.
    """
    if not buf:
        raise DatasetError(f'{where}: zero-byte image')
    data = np.frombuffer(buf, np.uint8)
    if buf[:3] == _JPEG_MAGIC:  # no alpha or 16 bits to refuse: one decode, oriented, colour
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    else:  # decoded as stored, to refuse what IMREAD_COLOR would convert without a word
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f'{where}: unreadable image (not a valid PNG/JPEG)')
    if img.dtype != np.uint8:
        raise DatasetError(f'{where}: {img.dtype} image; only 8-bit frames are supported')
    if img.ndim == 3 and img.shape[2] == 4:
        raise DatasetError(f'{where}: RGBA frame; remove the alpha channel first (a video '
                           'deblurring dataset has no transparency to keep)')
    if buf[:3] != _JPEG_MAGIC and any(tag in buf for tag in _EXIF_CHUNKS):
        oriented = cv2.imdecode(data, cv2.IMREAD_COLOR)  # (PNG eXIf, WebP EXIF)
        img = img if oriented is None else oriented
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)  # gray: converted, as the datasets are RGB
    return np.ascontiguousarray(img[..., ::-1])


#: the first bytes of a JPEG file (SOI and the next marker's 0xFF)
_JPEG_MAGIC = b'\xff\xd8\xff'
#: the chunks that carry EXIF (and so maybe an orientation) in a PNG and in a WebP file
_EXIF_CHUNKS = (b'eXIf', b'EXIF')


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
