"""Nothing lost, nothing silently wrong: each case reproduces a finding of the adversarial
sweep (the input overwritten, frames paired by position, a truncated LMDB, half-written
conversions, SIGTERM, odd frame sizes) and checks the fix."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import cv2
import lmdb
import numpy as np
import pytest
import torch

from data_trees import make_tree
from mtu_toolkit.apis import OutputError, deblur_video
from mtu_toolkit.datasets import LmdbStore, VideoDeblurDataset
from mtu_toolkit.datasets.lmdb_writer import convert_dataset
from mtu_toolkit.registry import MODELS

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), 'configs'))
from tiny_data import file_size_limit  # noqa: E402
import prewarmed  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVERT = osp.join(ROOT, 'tools', 'dataset_converters', 'convert_to_lmdb.py')
DEBLUR = osp.join(ROOT, 'tools', 'deblur_video.py')
TINY = dict(type='MTURestorer', backbone=dict(type='MTUNet', num_units=1, channels=4,
                                              num_blocks=0))

pytestmark = pytest.mark.usefixtures('one_thread')


def tiny():
    import mtu_toolkit.models  # noqa: F401
    torch.manual_seed(0)
    return MODELS.build(TINY).eval()


def write_video(path, frames=6, size=(48, 40), fourcc='MJPG'):
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (w, h))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    writer.release()
    return str(path)


def tool_files(tmp_path):
    config = tmp_path / 'tiny.py'
    config.write_text(f"default_scope = 'mtu'\nmodel = {TINY!r}\n")
    torch.save(dict(state_dict=tiny().state_dict(), meta=dict(iter=1)), tmp_path / 'tiny.pth')
    return str(config), str(tmp_path / 'tiny.pth')


# ---------------------------------------------------------------- 1. the input overwritten
def test_the_input_is_never_the_output(tmp_path):
    video = write_video(tmp_path / 'in.avi')
    before = open(video, 'rb').read()
    with pytest.raises(OutputError, match='is the input'):
        deblur_video(tiny(), video, video, progress=False)
    os.symlink(video, tmp_path / 'link.avi')  # the same file through a link
    with pytest.raises(OutputError, match='is the input'):
        deblur_video(tiny(), video, str(tmp_path / 'link.avi'), progress=False, overwrite=True)
    assert open(video, 'rb').read() == before


def test_an_existing_output_file_needs_overwrite(tmp_path):
    config, ckpt = tool_files(tmp_path)
    video = write_video(tmp_path / 'in.avi')
    out = tmp_path / 'out.avi'
    out.write_bytes(b'precious')
    cmd = [sys.executable, DEBLUR, config, ckpt, video, str(out), '--quiet']
    proc = prewarmed.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5 and 'exists; pass --overwrite' in proc.stderr
    assert out.read_bytes() == b'precious'
    proc = prewarmed.run(cmd + ['--overwrite'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert cv2.VideoCapture(str(out)).read()[0]
    proc = prewarmed.run([sys.executable, DEBLUR, config, ckpt, video, video, '--quiet',
                          '--overwrite'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5 and 'is the input' in proc.stderr


# ---------------------------------------------------------------- 2. frames paired by name
def _frames_tree(root, blur_names, sharp_names):
    rng = np.random.default_rng(1)
    for sub, names in (('input', blur_names), ('GT', sharp_names)):
        folder = osp.join(root, 'train', 'v0', sub)
        os.makedirs(folder)
        for name in names:
            img = np.full((12, 16, 3), int(name.split('.')[0]) * 10 % 256, np.uint8)
            img[0, 0] = rng.integers(0, 256, 3)
            cv2.imwrite(osp.join(folder, name), img)


def test_unpadded_frame_names_are_in_natural_order(tmp_path):
    names = [f'{i}.png' for i in range(12)]  # 0, 1, ..., 10, 11 (text order: 0 1 10 11 2 ...)
    _frames_tree(str(tmp_path / 'src'), names, names)
    out = str(tmp_path / 'out')
    convert_dataset(str(tmp_path / 'src'), out, 'dvd')
    store = LmdbStore(osp.join(out, 'train', 'blur.lmdb'))
    values = [cv2.imdecode(np.frombuffer(store.get('v0', i), np.uint8), 1)[5, 5, 0]
              for i in range(12)]
    assert values == [i * 10 % 256 for i in range(12)]


def test_frames_pair_by_name_and_the_unpaired_are_named(tmp_path):
    blur = [f'{i:05d}.png' for i in range(0, 6)]
    sharp = [f'{i:05d}.png' for i in range(1, 7)]  # shifted by one: same count, wrong pairs
    _frames_tree(str(tmp_path / 'src'), blur, sharp)
    proc = prewarmed.run([sys.executable, CONVERT, str(tmp_path / 'src'), str(tmp_path / 'out')],
                         capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert 'input/00000.png has no partner in GT/' in proc.stderr
    assert 'GT/00006.png has no partner in input/' in proc.stderr
    assert not osp.exists(tmp_path / 'out')


# ---------------------------------------------------------------- 4. a truncated LMDB
def test_truncated_lmdb_is_named_not_a_bus_error(tmp_path):
    make_tree(str(tmp_path / 'src'), 'dvd', frames=6, size=(64, 96))
    out = str(tmp_path / 'out')
    convert_dataset(str(tmp_path / 'src'), out, 'dvd')
    data = osp.join(out, 'test', 'blur.lmdb', 'data.mdb')
    env = lmdb.open(osp.dirname(data), readonly=True, lock=False)
    needed = (env.info()['last_pgno'] + 1) * env.stat()['psize']
    env.close()
    with open(data, 'r+b') as f:
        f.truncate(needed // 2)
    with pytest.raises(ValueError, match='data.mdb: truncated'):
        VideoDeblurDataset(out, split='test', backend='lmdb')
    # the tools die with a named file instead of SIGBUS (exit 135)
    code = ('import sys; sys.path.insert(0, %r)\n'
            'from mtu_toolkit.datasets import VideoDeblurDataset\n'
            'd = VideoDeblurDataset(%r, split="test", backend="lmdb")\n'
            'print(d[0]["inputs"].sum())') % (ROOT, out)
    proc = prewarmed.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120)
    assert proc.returncode == 1 and 'truncated' in proc.stderr and 'data.mdb' in proc.stderr


# ---------------------------------------------------------------- 6. all or nothing
def _convert(src, out, *extra):
    return prewarmed.run([sys.executable, CONVERT, src, out, *extra], capture_output=True,
                         text=True, timeout=300)


def test_bad_outputs_are_refused_before_any_work(tmp_path):
    src = str(tmp_path / 'src')
    make_tree(src, 'dvd')
    (tmp_path / 'file').write_text('x')
    proc = _convert(src, str(tmp_path / 'file'))
    assert proc.returncode != 0 and 'output root is a file' in proc.stderr
    os.makedirs(tmp_path / 'out' / 'train')
    (tmp_path / 'out' / 'train' / 'sharp.lmdb').write_text('x')
    proc = _convert(src, str(tmp_path / 'out'))
    assert proc.returncode != 0 and 'sharp.lmdb: a file stands where the database goes' \
        in proc.stderr
    assert sorted(os.listdir(tmp_path / 'out' / 'train')) == ['sharp.lmdb']
    # nowhere to write (a path under /proc cannot be created)
    proc = _convert(src, '/proc/mtu_out')
    assert proc.returncode != 0 and 'cannot write the output there' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_a_bad_frame_in_the_last_split_leaves_no_database_at_all(tmp_path):
    src = str(tmp_path / 'src')
    make_tree(src, 'dvd')
    # every split is paired and checked first; frames are decoded while writing: a bad frame
    # in 'train' (written after 'test') must not leave test's databases or empty folders
    bad = osp.join(src, 'train', 's1', 'GT', '00003.jpg')
    open(bad, 'wb').close()
    out = str(tmp_path / 'out')
    proc = _convert(src, out)
    assert proc.returncode != 0 and '00003.jpg: zero-byte image' in proc.stderr
    assert not osp.exists(out)


def test_a_rerun_without_flow_drops_the_stale_flow(tmp_path):
    src = str(tmp_path / 'src')
    make_tree(src, 'dvd', frames=5, size=(32, 48))
    out = str(tmp_path / 'out')
    convert_dataset(src, out, 'dvd', with_flow=True)
    assert osp.isdir(osp.join(out, 'train', 'flow.lmdb'))
    convert_dataset(src, out, 'dvd')
    assert sorted(os.listdir(osp.join(out, 'train'))) == ['blur.lmdb', 'sharp.lmdb']


# ---------------------------------------------------------------- 7. SIGTERM, SIGKILL
def test_sigterm_leaves_nothing_and_the_next_run_removes_a_killed_runs_file(tmp_path):
    config, ckpt = tool_files(tmp_path)
    video = write_video(tmp_path / 'in.avi', frames=400, size=(160, 128))
    out = tmp_path / 'out.avi'
    proc = subprocess.Popen([sys.executable, DEBLUR, config, ckpt, video, str(out),
                             '--eager'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    deadline = time.time() + 120
    while not list(tmp_path.glob('.out.avi.tmp-*')) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and 'terminated; no output written' in err
    assert not out.exists() and not list(tmp_path.glob('.out.avi.tmp-*'))
    # a run killed hard leaves its temporary; the next run removes it
    stale = tmp_path / '.out.avi.tmp-mtu999999-0.avi'
    stale.write_bytes(b'half')
    short = write_video(tmp_path / 'short.avi', frames=3)
    done = prewarmed.run([sys.executable, DEBLUR, config, ckpt, short, str(out), '--quiet'],
                         capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and out.exists()


@pytest.mark.parametrize('arrives_after', ['open_writer', 'BackgroundReader'])
def test_a_signal_while_setting_up_leaves_no_temporary_and_no_decoding_thread(
        tmp_path, monkeypatch, arrives_after):
    """A Ctrl-C right after the temporary output was made, or the reader thread started,
    before their names were kept: it left the temporary behind, or closed the capture under the
    decoding thread (a crash or a hang in FFmpeg, seen as SIGTERM test time-outs in CI)."""
    import threading
    from mtu_toolkit.apis import inference
    video = write_video(tmp_path / 'in.avi', frames=400, size=(160, 128))
    out = tmp_path / 'out.avi'
    readers_alive_at_close = []

    def open_reader(*args):
        reader = real_open_reader(*args)
        close = reader.close
        reader.close = lambda: (readers_alive_at_close.append(sum(  # (it closes at its end)
            t.name == 'mtu-reader' and t.is_alive() and t is not threading.current_thread()
            for t in threading.enumerate())), close())
        return reader

    def signalled(build):
        def call(*args, **kwargs):
            made = build(*args, **kwargs)
            signal.raise_signal(signal.SIGINT)  # Python's handler runs at the next bytecode
            return made
        return call

    before = set(threading.enumerate())  # (other tests' threads are not this one's to judge)
    real_open_reader = inference.open_reader
    monkeypatch.setattr(inference, 'open_reader', open_reader)
    monkeypatch.setattr(inference, arrives_after, signalled(getattr(inference, arrives_after)))
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            deblur_video(tiny(), video, str(out), progress=False)
    finally:
        signal.signal(signal.SIGINT, old)
    assert readers_alive_at_close and not any(readers_alive_at_close)
    assert not out.exists() and not list(tmp_path.glob('.out.avi.tmp-*'))
    assert not [t for t in set(threading.enumerate()) - before
                if t.name in ('mtu-reader', 'mtu-writer')]


def test_held_signals_wait_for_the_block_whichever_thread_the_kernel_picks():
    """A signal sent while the main thread holds them is acted on when the block ends, also
    when the kernel hands it to another thread (Python then runs the handler in the main
    thread at once, so blocking it in the main thread alone did not hold it)."""
    import threading
    from mtu_toolkit.fileio import signals_held
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
                sender.start()
                sender.join()
                for _ in range(1000):  # bytecodes at which Python would run the handler
                    time.sleep(0)
                done.append('block ran to its end')
    finally:
        signal.signal(signal.SIGINT, old)
    assert done == ['block ran to its end']
    with signals_held():  # nothing arrived: nothing is raised afterwards
        pass


def test_only_the_toolkits_own_dead_temporaries_are_removed(tmp_path):
    """The sweep removes ``<output>.tmp-mtu<pid>-<n><suffix>`` of dead processes and nothing
    else: not a user's folder whose name merely starts like one, not a live process's."""
    from mtu_toolkit.fileio import remove_stale_temporaries, temporary_path
    out = tmp_path / 'sharp'
    dead = [tmp_path / 'sharp.tmp-mtu999999999-0', tmp_path / 'sharp.tmp-mtu999999999-4']
    users = [tmp_path / 'sharp.tmp-2024-11-30 first try', tmp_path / 'sharp.tmp-1x',
             tmp_path / 'sharp.tmp-2024-11', tmp_path / 'sharp.tmp-20241130',
             tmp_path / f'sharp.tmp-mtu{os.getppid()}-0']  # the last: a live process's
    for folder in dead + users:
        folder.mkdir()
        (folder / 'frame.png').write_bytes(b'kept?')
    assert sorted(remove_stale_temporaries(str(out))) == sorted(map(str, dead))
    assert all(folder.is_dir() for folder in users)
    assert temporary_path(str(out), '.mp4') != temporary_path(str(out), '.mp4')


def test_two_deblurs_of_one_process_to_one_output(tmp_path):
    """Two calls in one process (a service's two threads) writing the same output each write
    their own temporary: the output is one whole result; a video is replaced only with
    ``overwrite`` (else the later call says another run wrote it), a folder never."""
    import threading
    video = write_video(tmp_path / 'in.avi', frames=5)
    model = tiny()
    for out, overwrite in ((tmp_path / 'a.avi', True), (tmp_path / 'b.avi', False),
                           (tmp_path / 'frames', False)):
        results = []

        def job():
            try:
                results.append(deblur_video(model, video, str(out), progress=False,
                                            overwrite=overwrite)['frames'])
            except OutputError as err:
                results.append(str(err))

        jobs = [threading.Thread(target=job) for _ in range(2)]
        for j in jobs:
            j.start()
        for j in jobs:
            j.join()
        if overwrite:
            assert results == [5, 5]
        else:  # (the later one's check at the start may already see the first one's result)
            refused = (f'{out}: another run filled it while this one ran; it was not replaced',
                       f'{out}: the output folder exists and is not empty') if out.is_dir() \
                else (f'{out}: another run wrote it while this one ran; it was not replaced '
                      '(--overwrite replaces it)', f'{out}: exists; pass --overwrite to replace it')
            assert 5 in results and [r for r in results if r != 5][0] in refused, results
        frames = (len(os.listdir(out)) if out.is_dir()
                  else int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)))
        assert frames == 5
    assert sorted(os.listdir(tmp_path)) == ['a.avi', 'b.avi', 'frames', 'in.avi']


def test_a_folder_filled_between_the_check_and_the_rename_is_not_replaced(tmp_path,
                                                                          monkeypatch):
    """The race of two writers of one folder, made certain: the second one's check sees no
    folder, the first one's frames land, then the second one's rename fails: one line, its
    temporary removed, the first one's frames kept."""
    from mtu_toolkit.apis import video_io
    out = tmp_path / 'frames'
    frame = np.zeros((8, 8, 3), np.uint8)
    first, second = (video_io.FrameFolderWriter(str(out)) for _ in range(2))
    first.write(frame)
    second.write(frame + 1)
    isdir = video_io.osp.isdir
    monkeypatch.setattr(video_io.osp, 'isdir', lambda p: False if p == str(out) else isdir(p))
    first.commit()
    with pytest.raises(OutputError, match='another run filled it while this one ran'):
        second.commit()
    assert os.listdir(out) == ['00000.png'] and cv2.imread(str(out / '00000.png')).max() == 0
    assert sorted(os.listdir(tmp_path)) == ['frames']


def test_an_empty_output_folder_removed_by_another_run_first(tmp_path, monkeypatch):
    """Two writers of one empty folder: the other run removes it between this one's check
    and its own removal. This one's frames land (no FileNotFoundError, no temporary left)."""
    from mtu_toolkit.apis import video_io
    out = tmp_path / 'frames'
    out.mkdir()
    writer = video_io.FrameFolderWriter(str(out))
    writer.write(np.full((8, 8, 3), 7, np.uint8))
    rmdir = os.rmdir

    def removed_first(path):
        rmdir(path)  # the other run
        rmdir(path)

    monkeypatch.setattr(video_io.os, 'rmdir', removed_first)
    writer.commit()
    assert os.listdir(out) == ['00000.png'] and cv2.imread(str(out / '00000.png')).max() == 7
    assert sorted(os.listdir(tmp_path)) == ['frames']


# ---------------------------------------------------------------- 9. odd frame sizes
def test_odd_frames_are_padded_with_a_word_not_cropped(tmp_path):
    folder = tmp_path / 'frames'  # a frame folder keeps the odd size (an encoder would not)
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f'{i}.png'), np.full((31, 41, 3), 40 * i, np.uint8))
    out = str(tmp_path / 'out.mp4')
    with pytest.warns(UserWarning, match='41x31 are padded to 42x32'):
        deblur_video(tiny(), str(folder), out, progress=False)
    cap = cv2.VideoCapture(out)
    ok, frame = cap.read()
    assert ok and frame.shape[:2] == (32, 42)


# ---------------------------------------------------------------- 9. the second sweep
EXPORT = osp.join(ROOT, 'tools', 'export.py')


def test_export_never_replaces_its_input_or_an_existing_file(tmp_path):
    config, ckpt = tool_files(tmp_path)
    before = open(ckpt, 'rb').read()
    (tmp_path / 'folder').mkdir()
    for out, why in ((ckpt, 'is the input'), (tmp_path / 'folder', 'is a folder'),
                     (tmp_path / 'nodir' / 'x.pt', 'does not exist')):
        proc = prewarmed.run([sys.executable, EXPORT, config, ckpt, str(out), '--size',
                              '16x16', '--no-check'], capture_output=True, text=True,
                             timeout=300)
        assert proc.returncode == 2 and why in proc.stderr, proc.stderr
        assert 'Traceback' not in proc.stderr
    assert open(ckpt, 'rb').read() == before
    assert sorted(os.listdir(tmp_path)) == ['folder', 'tiny.pth', 'tiny.py']
    out = tmp_path / 'x.pt'
    for extra, code in (([], 0), ([], 2), (['--overwrite'], 0)):
        proc = prewarmed.run([sys.executable, EXPORT, config, ckpt, str(out), '--size',
                              '16x16', '--no-check', *extra], capture_output=True, text=True,
                             timeout=300)
        assert proc.returncode == code, proc.stderr
    assert code == 0 and 'exists; pass --overwrite' not in proc.stderr
    assert not list(tmp_path.glob('*.tmp-*'))


def test_export_on_a_full_disk_says_so_and_leaves_nothing(tmp_path):
    # TorchScript's writer aborted from C++ (exit 134) and left its temporary behind
    config, ckpt = tool_files(tmp_path)
    out = tmp_path / 'out'
    out.mkdir()
    proc = prewarmed.run([sys.executable, EXPORT, config, ckpt, str(out / 's.pt'), '--size',
                          '16x16', '--no-check'], capture_output=True, text=True, timeout=300,
                         preexec_fn=file_size_limit(16384))
    assert proc.returncode == 5, proc.stderr[-2000:]
    assert proc.stderr == f'error: {out / "s.pt"}: cannot be written (File too large)\n'
    assert os.listdir(out) == []


def test_deblur_refuses_absurd_frame_rates_and_a_tile_of_zero(tmp_path):
    config, ckpt = tool_files(tmp_path)
    video = write_video(tmp_path / 'in.avi')
    for extra in (['--fps=inf'], ['--fps=nan'], ['--fps=0'], ['--fps=-5'], ['--tile=0']):
        proc = prewarmed.run([sys.executable, DEBLUR, config, ckpt, video,
                              str(tmp_path / 'o.avi'), *extra], capture_output=True,
                             text=True, timeout=120)
        assert proc.returncode == 2 and extra[0].split('=')[0] in proc.stderr, proc.stderr
    with pytest.raises(Exception, match='fps must be a frame rate'):
        deblur_video(tiny(), video, str(tmp_path / 'o.avi'), fps=float('inf'))
    assert not osp.exists(tmp_path / 'o.avi')


def test_a_truncated_video_is_said_so(tmp_path):
    video = write_video(tmp_path / 'in.avi', frames=30)
    data = open(video, 'rb').read()
    (tmp_path / 'cut.avi').write_bytes(data[:len(data) // 2])
    with pytest.warns(UserWarning, match=r'decoded \d+ of the 30 frames'):
        stats = deblur_video(tiny(), str(tmp_path / 'cut.avi'), str(tmp_path / 'o.avi'),
                             progress=False)
    assert 0 < stats['frames'] < 29


def test_the_tool_says_each_problem_in_its_own_line_only(tmp_path):
    """OpenCV's and FFmpeg's log lines ("moov atom not found", a float TIFF's warning) do not
    come before the tool's one line."""
    config, ckpt = tool_files(tmp_path)
    video = write_video(tmp_path / 'in.mp4', frames=8, fourcc='mp4v')
    data = open(video, 'rb').read()
    (tmp_path / 'cut.mp4').write_bytes(data[:len(data) // 2])  # mp4v: the index is at the end
    (tmp_path / 'hdr').mkdir()
    cv2.imwrite(str(tmp_path / 'hdr' / '0.tif'), np.full((8, 8, 3), 0.5, np.float32))
    for source, message in (('cut.mp4', 'cannot open as a video'),
                            ('hdr', 'float32 samples are not read as a frame')):
        proc = prewarmed.run([sys.executable, DEBLUR, config, ckpt, str(tmp_path / source),
                              str(tmp_path / 'out.avi'), '--quiet'], capture_output=True,
                             text=True, timeout=120)
        assert proc.returncode == 3 and proc.stderr.splitlines() == [
            f'error: {tmp_path / source}' + ('/0.tif' if source == 'hdr' else '') + ': '
            + message + (' (unreadable or unsupported format)' if source == 'cut.mp4'
                         else ' (8- or 16-bit images are)')], proc.stderr


@pytest.mark.parametrize('ext', ['.avi', '.mp4'])
def test_a_video_cut_short_by_a_full_disk_is_not_passed_off_as_done(tmp_path, ext):
    """OpenCV's writer reports no write error: the file is read back, and one short of its
    frames is refused (exit 5, one line), an earlier output kept as it was."""
    config, ckpt = tool_files(tmp_path)
    video = write_video(tmp_path / 'in.avi', frames=30, size=(160, 128))
    out = tmp_path / f'out{ext}'
    out.write_bytes(b'an earlier result')
    proc = prewarmed.run([sys.executable, DEBLUR, config, ckpt, video, str(out), '--quiet',
                          '--overwrite'], capture_output=True, text=True, timeout=300,
                         preexec_fn=file_size_limit(40000))
    assert proc.returncode == 5 and proc.stderr.splitlines() == [
        f'error: {out}: the encoded file does not hold the 30 frames written (a full disk or a '
        'file size limit?); nothing was written'], proc.stderr
    assert out.read_bytes() == b'an earlier result'
    assert sorted(os.listdir(tmp_path)) == ['in.avi', f'out{ext}', 'tiny.pth', 'tiny.py']


@pytest.mark.parametrize('out', ['o.avi', 'frames'])
def test_an_output_made_meanwhile_is_not_replaced(tmp_path, out):
    """An output that appears while a writer writes (another run's) is kept: the writer's
    commit refuses in one line and leaves nothing of its own."""
    from mtu_toolkit.apis import open_writer
    writer = open_writer(str(tmp_path / out), 10, (48, 40))
    writer.write(np.zeros((40, 48, 3), np.uint8))
    if out == 'frames':
        (tmp_path / out).mkdir()
        (tmp_path / out / '00000.png').write_bytes(b'theirs')
    else:
        (tmp_path / out).write_bytes(b'theirs')
    with pytest.raises(OutputError, match='another run'):
        writer.commit()
    assert sorted(os.listdir(tmp_path)) == [out]
    theirs = tmp_path / out / '00000.png' if out == 'frames' else tmp_path / out
    assert theirs.read_bytes() == b'theirs'


def test_output_folders_a_user_gives(tmp_path):
    """A linked output folder is filled where it points (the link stays); a Path works; a
    read-only place is named before any work; a writer takes only (H, W, 3) uint8 frames."""
    from pathlib import Path

    from mtu_toolkit.apis import open_writer
    video = write_video(tmp_path / 'in.avi', frames=3)
    (tmp_path / 'disk' / 'results').mkdir(parents=True)
    (tmp_path / 'link').symlink_to(tmp_path / 'disk' / 'results')
    assert deblur_video(tiny(), Path(video), tmp_path / 'link', progress=False)['frames'] == 3
    assert (tmp_path / 'link').is_symlink() and len(os.listdir(tmp_path / 'link')) == 3
    assert sorted(os.listdir(tmp_path / 'disk')) == ['results']
    (tmp_path / 'ro').mkdir()
    os.chmod(tmp_path / 'ro', 0o555)
    try:
        if not os.access(tmp_path / 'ro', os.W_OK):  # (root may write anyway)
            for out in ('ro/out.avi', 'ro/frames'):
                with pytest.raises(OutputError, match=f'the folder {tmp_path / "ro"} is not '
                                                      'writable'):
                    open_writer(str(tmp_path / out), 10, (48, 40))
    finally:
        os.chmod(tmp_path / 'ro', 0o755)
    for out in ('w.avi', 'w_frames'):
        writer = open_writer(str(tmp_path / out), 10, (48, 40))
        for frame, what in ((np.zeros((40, 48), np.uint8), r'uint8 \(40, 48\)'),
                            (np.zeros((40, 48, 3), np.float32), r'float32 \(40, 48, 3\)')):
            with pytest.raises(OutputError, match=f'arrays, got {what}'):
                writer.write(frame)
        writer.abort()


def test_frames_of_every_format_opencv_reads_and_a_word_for_other_files(tmp_path):
    from mtu_toolkit.apis import open_reader
    for i, ext in enumerate(['png', 'webp', 'ppm', 'pgm', 'jpg']):
        shape = (8, 8) if ext == 'pgm' else (8, 8, 3)  # (PGM: gray)
        assert cv2.imwrite(str(tmp_path / f'{i}.{ext}'), np.full(shape, 40 * i, np.uint8))
    (tmp_path / 'notes.txt').write_text('shot on a phone')
    (tmp_path / '.DS_Store').write_bytes(b'')
    with pytest.warns(UserWarning, match=r'1 file\(s\) that are not frames .* left out: '
                                         'notes.txt'):
        reader = open_reader(str(tmp_path))
    assert [int(f[0, 0, 0]) for f in reader] == [0, 40, 80, 120, 160]


def test_non_ascii_names_under_a_c_locale(tmp_path):
    """Under the C locale with Python's UTF-8 mode off, a UTF-8 name from the command line
    (decoded to surrogates) reaches the file it names (OpenCV crashed on it); a name that is
    not UTF-8 is one line."""
    config, ckpt = tool_files(tmp_path)
    (tmp_path / 'frames').mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / 'frames' / f'{i}.png'), np.full((16, 16, 3), i, np.uint8))
    env = dict(os.environ, LC_ALL='C', PYTHONUTF8='0', OMP_NUM_THREADS='1')
    for name, code in ((b'sortie_\xc3\xbc.avi', 0), (b'sortie_\xfc.avi', 5)):
        out = os.path.join(os.fsencode(tmp_path), name)
        proc = prewarmed.run([sys.executable, DEBLUR, config, ckpt, str(tmp_path / 'frames'),
                              out, '--quiet'], env=env, capture_output=True, timeout=120)
        assert proc.returncode == code, proc.stderr
        assert os.path.exists(out) == (code == 0)
        if code:
            assert len(proc.stderr.splitlines()) == 1 and proc.stderr.decode().endswith(
                'OpenCV takes UTF-8 file names only; rename it\n')
    assert sorted(os.listdir(os.fsencode(tmp_path)))[-1] == b'tiny.py'
    footage = os.path.join(os.fsencode(tmp_path), b'clip_\xc3\xbc.avi')
    os.replace(write_video(tmp_path / 'clip.avi', frames=3), footage)
    proc = prewarmed.run([sys.executable, '-c', 'import sys\nfrom mtu_toolkit.datasets.synthetic '
                          'import read_footage\nprint(len(read_footage(sys.argv[1])))', footage],
                         env=dict(env, PYTHONPATH=ROOT), capture_output=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == b'3', proc.stderr


def test_infer_clip_after_the_streaming_api():
    from mtu_toolkit.apis import deblur_frames
    model = tiny()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(3)]
    streamed = [r for _, r in deblur_frames(model, frames)]  # (under inference_mode)
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        again = model.infer_clip(clip)  # reuses no inference-mode buffer in place
    assert again.shape == (3, 3, 24, 32) and len(streamed) == 3


def test_a_bad_output_is_refused_before_the_model_loads(tmp_path):
    video = write_video(tmp_path / 'in.avi')
    # the checkpoint is missing too: the output's error comes first, before any loading
    proc = prewarmed.run([sys.executable, DEBLUR, str(tmp_path / 'none.py'),
                          str(tmp_path / 'none.pth'), video, str(tmp_path / 'o.xyz')],
                         capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5 and "unknown video extension '.xyz'" in proc.stderr
