"""Reading and writing videos and frame folders, one RGB uint8 frame (H, W, 3) at a time.

Readers decode lazily (a video is never held in memory) and fail with an :class:`InputError`
naming the file at fault. Writers are atomic: frames go to a temporary file (or folder) beside
the output, renamed over it by :meth:`commit`; :meth:`abort` deletes it, so a failed run never
leaves a half-written output, and the temporaries of runs that were killed are removed by the
next writer of the same output. A writer never replaces its input, nor an existing file unless
asked to (``overwrite``).
"""
import errno
import os
import os.path as osp
import shutil
import warnings

import cv2
import numpy as np

from ..datasets.frame_io import FRAME_EXTS, list_frame_files, natural_key
from ..fileio import (check_output_file, check_writable_folder, folder_target, opencv_path,
                      remove_stale_temporaries, temporary_path)
from .errors import InputError, OutputError
#: video containers written, with the FourCC used for each
VIDEO_FOURCC = {'.mp4': 'mp4v', '.mov': 'mp4v', '.m4v': 'mp4v', '.avi': 'MJPG', '.mkv': 'MJPG'}
#: frame rate assumed for frame folders (and videos that do not state one)
DEFAULT_FPS = 25.0


def quiet_opencv():
    """Silence OpenCV's and FFmpeg's own log lines (a tool reports each problem in one line
    of its own: "moov atom not found" or "Failed to write frame" would only come before it).
    A command-line tool calls this first; it must run before the process's first video is
    opened (FFmpeg reads its level then). ``OPENCV_FFMPEG_LOGLEVEL`` set by the user stays."""
    os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')  # AV_LOG_QUIET
    logging = getattr(getattr(cv2, 'utils', None), 'logging', None)
    if logging is not None:  # errors only
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)


class VideoFileReader:
    """Frames of a video file (anything OpenCV's FFmpeg backend decodes: mp4, avi, mov...).

    Args:
        path (str): the video file.
        fps (float | None): override the frame rate the file states.

    Attributes: ``fps`` (float), ``size`` ((width, height)), ``num_frames`` (int, the container's
    estimate; 0 when unknown). Iterating yields (H, W, 3) uint8 RGB frames.
    """

    def __init__(self, path, fps=None):
        self.path = path
        self._cap = cv2.VideoCapture(opencv_path(path, InputError))
        if not self._cap.isOpened():
            raise InputError(f'{path}: cannot open as a video (unreadable or unsupported format)')
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise InputError(f'{path}: the video has no frames (empty or undecodable)')
        self._first = first
        stated = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps or (stated if stated and stated > 0 and np.isfinite(stated)
                                 else DEFAULT_FPS))
        self.size = (first.shape[1], first.shape[0])
        self.num_frames = max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)

    def __iter__(self):
        frame, index = self._first, 0
        self._first = None
        if frame is None:
            raise RuntimeError(f'{self.path}: a VideoFileReader can be iterated only once')
        try:
            while frame is not None:
                if (frame.shape[1], frame.shape[0]) != self.size:
                    raise InputError(f'{self.path}: frame {index} is {frame.shape[1]}x'
                                     f'{frame.shape[0]}, the video started at '
                                     f'{self.size[0]}x{self.size[1]}')
                yield _bgr_to_rgb(frame)
                index += 1
                ok, frame = self._cap.read()
                frame = frame if ok else None
        finally:
            self.close()
        # (some containers state an estimate: one frame short is not worth a word)
        if index < self.num_frames - 1:
            warnings.warn(f'{self.path}: decoded {index} of the {self.num_frames} frames the '
                          'file states; the rest is truncated or undecodable, so the output '
                          f'has {index} frames')


    def close(self):
        """Release the file (reading ends; also what iterating to the end does)."""
        self._first = None
        self._cap.release()


class FrameFolderReader:
    """Frames stored as images in one folder, in natural order of their names.

    Args:
        path (str): the folder.
        fps (float | None): frame rate to report (default :data:`DEFAULT_FPS`).
    """

    def __init__(self, path, fps=None):
        self.path = path
        self.files = list_frame_files(path)
        if not self.files:
            raise InputError(f'{path}: the folder holds no frames ({"/".join(FRAME_EXTS)})')
        self.fps = float(fps or DEFAULT_FPS)
        first = self._read(self.files[0])
        self.size = (first.shape[1], first.shape[0])
        self.num_frames = len(self.files)
        self._warn_what_is_lost(osp.join(path, self.files[0]))
        skipped = sorted(set(os.listdir(path)) - set(self.files), key=natural_key)
        skipped = [n for n in skipped if not n.startswith('.') and osp.isfile(osp.join(path, n))
                   and n not in ('Thumbs.db', 'desktop.ini')]
        if skipped:
            warnings.warn(f'{path}: {len(skipped)} file(s) that are not frames '
                          f'({"/".join(FRAME_EXTS)}) are left out: {", ".join(skipped[:3])}'
                          f'{", ..." if len(skipped) > 3 else ""}', stacklevel=2)

    @staticmethod
    def _warn_what_is_lost(file):
        """Frames are read as 8-bit colour: say so when the first frame holds more (an alpha
        channel, 16 bits), rather than drop it without a word."""
        img = cv2.imread(opencv_path(file, InputError), cv2.IMREAD_UNCHANGED)
        lost = ([f'{img.dtype.itemsize * 8}-bit values (read as 8-bit)']
                if img is not None and img.dtype != np.uint8 else [])
        if img is not None and img.ndim == 3 and img.shape[2] == 4:
            lost.append('the alpha channel (dropped: the output has none)')
        if lost:
            warnings.warn(f'{file}: the frames hold {" and ".join(lost)}', stacklevel=3)

    def _read(self, name):
        file = osp.join(self.path, name)
        img = cv2.imread(opencv_path(file, InputError), cv2.IMREAD_COLOR)
        if img is None:
            raw = cv2.imread(opencv_path(file, InputError), cv2.IMREAD_UNCHANGED)
            if raw is not None:  # e.g. a TIFF of 32-bit float samples
                raise InputError(f'{file}: {raw.dtype} samples are not read as a frame '
                                 '(8- or 16-bit images are)')
            raise InputError(f'{file}: unreadable image')
        return img

    def close(self):
        """Nothing to release (one image is open at a time, while it is read)."""

    def __iter__(self):
        for name in self.files:
            img = self._read(name)
            if (img.shape[1], img.shape[0]) != self.size:
                raise InputError(f'{osp.join(self.path, name)}: frame is {img.shape[1]}x'
                                 f'{img.shape[0]}, the first frame is '
                                 f'{self.size[0]}x{self.size[1]}')
            yield _bgr_to_rgb(img)


def open_reader(path, fps=None):
    """A :class:`FrameFolderReader` for a folder, a :class:`VideoFileReader` for a file."""
    path = os.fspath(path)
    if osp.isdir(path):
        return FrameFolderReader(path, fps)
    if not osp.exists(path):
        raise InputError(f'{path}: no such file or folder')
    if osp.getsize(path) == 0:
        raise InputError(f'{path}: the video file is empty (0 bytes)')
    return VideoFileReader(path, fps)


class VideoFileWriter:
    """Encodes frames to a video file through a temporary file renamed at :meth:`commit`.

    Args:
        path (str): output file; its extension picks the codec (:data:`VIDEO_FOURCC`).
        fps (float): frame rate.
        size (tuple): (width, height) of every frame.
        overwrite (bool): replace an existing file at ``path``. Default False (refused).

    The encoders need even sizes (a 321x241 frame would lose its last column and row): odd
    frames are padded by repeating their last column / row, with a warning.
    """

    def __init__(self, path, fps, size, overwrite=False):
        path = os.fspath(path)
        check_video_path(path, overwrite)
        opencv_path(path, OutputError)
        ext = osp.splitext(path)[1].lower()
        self.path, self.size, self.count, self.overwrite = path, tuple(size), 0, overwrite
        folder = osp.dirname(osp.abspath(path))
        width, height = self.size
        self.padded = (width + width % 2, height + height % 2)
        if self.padded != self.size:
            edges = ' and '.join(n for n, odd in (('column', width % 2), ('row', height % 2))
                                 if odd)
            warnings.warn(f'{path}: frames of {width}x{height} are padded to '
                          f'{self.padded[0]}x{self.padded[1]} by repeating the last {edges} '
                          f'({VIDEO_FOURCC[ext]} encodes even sizes only; a frame folder keeps '
                          'the size)', stacklevel=2)
        # the extension stays last: OpenCV picks the container from it
        stem = osp.join(folder, f'.{osp.basename(path)}')
        remove_stale_temporaries(stem, ext)
        self.tmp = temporary_path(stem, ext)
        self._writer = cv2.VideoWriter(opencv_path(self.tmp, OutputError),
                                       cv2.VideoWriter_fourcc(*VIDEO_FOURCC[ext]),
                                       float(fps), self.padded)
        if not self._writer.isOpened():
            self._remove_tmp()
            raise OutputError(f'{path}: OpenCV cannot encode {VIDEO_FOURCC[ext]} into {ext} here')

    def write(self, rgb):
        """Append one (H, W, 3) uint8 RGB frame."""
        check_frame(rgb, self.size, self.path)
        if self.padded != self.size:
            rgb = np.pad(rgb, ((0, self.padded[1] - self.size[1]),
                               (0, self.padded[0] - self.size[0]), (0, 0)), mode='edge')
        self._writer.write(np.ascontiguousarray(rgb[..., ::-1]))
        self.count += 1

    def commit(self):
        self._writer.release()
        if self.count == 0 or not osp.isfile(self.tmp) or osp.getsize(self.tmp) == 0:
            self._remove_tmp()
            raise OutputError(f'{self.path}: nothing was encoded')
        if not self._holds_every_frame():
            self._remove_tmp()
            raise OutputError(f'{self.path}: the encoded file does not hold the {self.count} '
                              'frames written (a full disk or a file size limit?); nothing '
                              'was written')
        if self.overwrite:
            os.replace(self.tmp, self.path)
            return
        try:  # (a hard link never replaces a file: no window between a check and the rename)
            os.link(self.tmp, self.path)
            linked = True
        except FileExistsError:
            linked = None
        except OSError:  # a file system without hard links: a check, then the rename
            linked = None if osp.exists(self.path) else False
        if linked is None:
            self._remove_tmp()
            raise OutputError(f'{self.path}: another run wrote it while this one ran; it was not '
                              'replaced (--overwrite replaces it)')
        if linked:
            self._remove_tmp()
        else:
            os.replace(self.tmp, self.path)

    def _holds_every_frame(self):
        """Whether the temporary file decodes to every frame written. OpenCV's writers report
        no error (a full disk leaves a short or unreadable file), so it is read back: the
        frame count it states and its last frame."""
        cap = cv2.VideoCapture(opencv_path(self.tmp, OutputError))
        try:
            if not cap.isOpened() or int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) != self.count:
                return False
            cap.set(cv2.CAP_PROP_POS_FRAMES, self.count - 1)
            return cap.read()[0]
        finally:
            cap.release()

    def abort(self):
        self._writer.release()
        self._remove_tmp()

    def _remove_tmp(self):
        if osp.exists(self.tmp):
            os.remove(self.tmp)


class FrameFolderWriter:
    """Writes frames as ``00000.png, 00001.png, ...`` into a temporary folder renamed at
    :meth:`commit`. An existing non-empty output folder is refused (nothing is overwritten).

    Args:
        path (str): output folder.
    """

    def __init__(self, path, fps=None, size=None, overwrite=False):
        path = os.fspath(path)
        path = path.rstrip('/\\') or path
        check_folder_path(path)
        opencv_path(path, OutputError)
        self.path, self.size, self.count = path, size, 0
        self.target = folder_target(path)
        remove_stale_temporaries(self.target)
        self.tmp = temporary_path(self.target)
        try:
            os.makedirs(self.tmp)
        except OSError as err:
            raise OutputError(f'{path}: cannot make its folder ({err.strerror})') from None

    def write(self, rgb):
        check_frame(rgb, self.size, self.path)
        file = osp.join(self.tmp, f'{self.count:05d}.png')
        if not cv2.imwrite(opencv_path(file, OutputError), np.ascontiguousarray(rgb[..., ::-1])):
            raise OutputError(f'{self.path}: writing frame {self.count} failed (a full disk?)')
        self.count += 1

    def commit(self):
        if self.count == 0:
            self.abort()
            raise OutputError(f'{self.path}: nothing was written')
        try:
            if osp.isdir(self.target) and os.listdir(self.target):
                raise FileExistsError(errno.ENOTEMPTY, 'filled', self.target)
            if osp.isdir(self.target):
                try:  # empty (checked at open): replaced by the finished folder
                    os.rmdir(self.target)
                except FileNotFoundError:  # another run removed it first: its rename follows
                    pass
            # (another run may fill it between the check and here: the rename then fails)
            os.replace(self.tmp, self.target)
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            self.abort()
            raise OutputError(f'{self.path}: another run filled it while this one ran; it was '
                              'not replaced') from None

    def abort(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def same_path(a, b):
    """Whether ``a`` and ``b`` are the same file or folder (also through links)."""
    try:
        return osp.exists(a) and osp.exists(b) and osp.samefile(a, b)
    except OSError:
        return False


def check_frame(rgb, size, path):
    """An OutputError naming ``path`` unless ``rgb`` is an (H, W, 3) uint8 array of ``size``
    (width, height; None: any)."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 \
            or rgb.dtype != np.uint8:
        what = (f'{rgb.dtype} {rgb.shape}' if isinstance(rgb, np.ndarray)
                else type(rgb).__name__)
        raise OutputError(f'{path}: frames are written as (H, W, 3) uint8 RGB arrays, got {what}')
    if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
        raise OutputError(f'{path}: frame of {rgb.shape[1]}x{rgb.shape[0]} written to a '
                          f'{size[0]}x{size[1]} output')


def check_video_path(path, overwrite=False):
    """Refuse a video file that could not or may not be written (one line, OutputError)."""
    ext = osp.splitext(path)[1].lower()
    if ext not in VIDEO_FOURCC:
        raise OutputError(f'{path}: unknown video extension {ext!r} '
                          f'(use one of {", ".join(VIDEO_FOURCC)} or a folder)')
    try:
        check_output_file(path, overwrite=overwrite)
    except ValueError as err:
        raise OutputError(str(err)) from None


def check_folder_path(path):
    """Refuse an output frame folder that could not or may not be written."""
    if osp.isdir(path) and os.listdir(path):
        raise OutputError(f'{path}: the output folder exists and is not empty')
    if osp.isfile(path):
        raise OutputError(f'{path}: is a file; give a video extension or a folder name')
    if osp.isdir(path) and osp.ismount(osp.realpath(path)):
        raise OutputError(f'{path}: is a mount point, which the finished folder cannot '
                          'replace; give a folder inside it')
    parent = osp.dirname(folder_target(path))
    if not osp.isdir(parent):
        raise OutputError(f'{path}: the folder {parent} does not exist')
    try:
        check_writable_folder(path, parent)
    except ValueError as err:
        raise OutputError(str(err)) from None


def check_output(path, overwrite=False, input_path=None):
    """What :func:`open_writer` refuses, checked without writing anything (so that a tool can
    refuse a bad output before it loads a model).

    ``input_path``: the input being processed, which the output may never replace (the same
    file, also through links); ``overwrite`` lets an existing output file be replaced.

    Raises:
        OutputError: one line naming ``path``.
    """
    path = os.fspath(path)
    if input_path is not None and same_path(path, input_path):
        raise OutputError(f'{path}: is the input {input_path}; write the result elsewhere')
    if osp.splitext(path)[1].lower() in VIDEO_FOURCC:
        check_video_path(path, overwrite)
    elif osp.splitext(path)[1] and not osp.isdir(path):
        raise OutputError(f'{path}: unknown video extension {osp.splitext(path)[1]!r} '
                          f'(use one of {", ".join(VIDEO_FOURCC)} or a folder)')
    else:
        check_folder_path(path.rstrip('/\\') or path)


def open_writer(path, fps, size, overwrite=False, input_path=None):
    """A :class:`VideoFileWriter` for a path with a video extension, else a folder writer
    (``overwrite`` and ``input_path`` as :func:`check_output`)."""
    path = os.fspath(path)
    check_output(path, overwrite, input_path)
    if osp.splitext(path)[1].lower() in VIDEO_FOURCC:
        return VideoFileWriter(path, fps, size, overwrite)
    return FrameFolderWriter(path, fps, size, overwrite)


def _bgr_to_rgb(img):
    return np.ascontiguousarray(img[..., ::-1])
