"""The everyday tools: slurm scripts, print_config, browse_dataset (+ the flow colours) and
analyze_logs."""
import importlib.util
import os
import os.path as osp
import re
import shlex
import socket
import sys

import cv2
import numpy as np
import pytest
from mmengine.config import Config

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), 'configs'))
from tiny_data import ROOT, make_dvd_tree, tool_env, write_config  # noqa: E402

from data_trees import make_tree  # noqa: E402
from mtu_toolkit.datasets import LmdbStore  # noqa: E402
from mtu_toolkit.datasets.lmdb_writer import convert_dataset  # noqa: E402
from mtu_toolkit.engine.config_loader import ArgumentError, ConfigError  # noqa: E402
from mtu_toolkit.visualization import color_wheel, flow_color_key, flow_to_color  # noqa: E402
import prewarmed  # noqa: E402


def _module(relpath):
    path = osp.join(ROOT, 'tools', *relpath.split('/'))
    spec = importlib.util.spec_from_file_location('_test_' + relpath.replace('/', '_')[:-3],
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# slurm


def _dry_run(script, args, **env):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'PYTHON')}
    full_env.update(DRY_RUN='1', **env)
    return prewarmed.run(['bash', osp.join('tools', script)] + args, cwd=ROOT, env=full_env,
                         capture_output=True, text=True, timeout=30)


def test_slurm_train_dry_run_command():
    proc = _dry_run('slurm_train.sh', ['gpu', 'my job', 'configs/mtu/mtu2_dvd.py',
                                       'work_dirs/a b', '--cfg-options', 'train_cfg.max_iters=9',
                                       '--amp'],
                    GPUS='16', SRUN_ARGS='--time=1-0 --qos=high')
    assert proc.returncode == 0, proc.stderr
    assert shlex.split(proc.stdout) == [
        'srun', '-p', 'gpu', '--job-name=my job', '--gres=gpu:8', '--ntasks=16',
        '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1', '--time=1-0',
        '--qos=high', 'python', '-u', 'tools/train.py', 'configs/mtu/mtu2_dvd.py',
        '--work-dir=work_dirs/a b', '--launcher=slurm', '--cfg-options',
        'train_cfg.max_iters=9', '--amp']


def test_slurm_test_dry_run_command_and_defaults():
    proc = _dry_run('slurm_test.sh', ['p1', 'eval', 'c.py', 'ckpt.pth', '--out-dir', 'res'],
                    GPUS='2', CPUS_PER_TASK='3', PYTHON='python3')
    assert proc.returncode == 0, proc.stderr
    assert shlex.split(proc.stdout) == [
        'srun', '-p', 'p1', '--job-name=eval', '--gres=gpu:2', '--ntasks=2',
        '--ntasks-per-node=2', '--cpus-per-task=3', '--kill-on-bad-exit=1', 'python3', '-u',
        'tools/test.py', 'c.py', 'ckpt.pth', '--launcher=slurm', '--out-dir', 'res']
    proc = _dry_run('slurm_train.sh', ['p', 'j', 'c.py', 'w'])  # GPUS defaults to 8
    assert shlex.split(proc.stdout)[4:8] == ['--gres=gpu:8', '--ntasks=8', '--ntasks-per-node=8',
                                             '--cpus-per-task=5']


def test_dist_scripts_dry_run_command():
    common = ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
              '--master_addr=127.0.0.1', '--master_port=29501', '--nproc_per_node=2']
    proc = _dry_run('dist_train.sh', ['configs/mtu/mtu2_dvd.py', '2', '--cfg-options',
                                      'train_cfg.max_iters=9'], PYTHON='python3',
                    MASTER_PORT='29501')
    assert proc.returncode == 0, proc.stderr
    # --launcher comes before the tool's own options: a trailing --cfg-options cannot eat it
    cmd = shlex.split(proc.stdout)
    assert osp.basename(cmd[0]) == 'python3'  # PYTHON, resolved by tools/env.sh
    assert cmd[1:] == common + [
        'tools/train.py', '--launcher', 'pytorch', 'configs/mtu/mtu2_dvd.py', '--cfg-options',
        'train_cfg.max_iters=9']
    proc = _dry_run('dist_test.sh', ['c.py', 'ckpt.pth', '2', '--out-dir', 'res'],
                    PYTHON='python3', MASTER_PORT='29501')
    assert proc.returncode == 0, proc.stderr
    assert shlex.split(proc.stdout)[1:] == common + [
        'tools/test.py', '--launcher', 'pytorch', 'c.py', 'ckpt.pth', '--out-dir', 'res']


@pytest.mark.parametrize('script, args, env, message', [
    ('slurm_train.sh', ['p', 'j', 'c.py'], {}, 'usage: '),
    ('slurm_test.sh', ['p', 'j', 'c.py'], {}, 'usage: '),
    ('slurm_train.sh', ['p', 'j', 'c.py', 'w'], {'GPUS': '0'}, 'GPUS must be a positive'),
    ('slurm_test.sh', ['p', 'j', 'c.py', 'k'], {'GPUS_PER_NODE': 'x'}, 'GPUS_PER_NODE must'),
    ('dist_train.sh', ['c.py'], {}, 'usage: '),
    ('dist_test.sh', ['c.py', 'ckpt.pth'], {}, 'usage: '),
    # NUM_PROCS forgotten: torchrun used to fail on '--work-dir' with a traceback
    ('dist_train.sh', ['c.py', '--work-dir', 'w'], {}, "NUM_PROCS must be a positive integer, "
                                                       "got '--work-dir'"),
    ('dist_test.sh', ['c.py', 'ckpt.pth', '0'], {}, 'NUM_PROCS must be a positive integer'),
])
def test_slurm_bad_arguments(script, args, env, message):
    proc = _dry_run(script, args, **env)
    assert proc.returncode == 2 and proc.stdout == ''
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr


def test_dist_train_names_a_master_port_in_use():
    # a second job on the machine takes the default port: one line before torchrun starts
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != 'NODE_RANK'}
        env.update(MASTER_PORT=str(port), PYTHON=sys.executable)
        proc = prewarmed.run(['bash', 'tools/dist_train.sh', 'configs/mtu/mtu2_dvd.py', '2'],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip() == (f'error: MASTER_PORT {port} is in use (another job?): set '
                                   'MASTER_PORT to a free port')


# ---------------------------------------------------------------------------------------------
# print_config


@pytest.fixture(scope='module')
def tiny_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp('print')
    data = make_dvd_tree(str(root / 'data'), videos=1, frames=4)
    return write_config(str(root / 'tiny.py'), data)


def test_print_config_is_what_train_gives_the_runner(tiny_cfg, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('LOCAL_RANK', '0')  # train.py's parse_args sets it; undone afterwards
    tool = _module('misc/print_config.py')
    out = tmp_path / 'merged.py'
    assert tool.main([tiny_cfg, '--cfg-options', 'train_cfg.max_iters=7', '+my_key=3',
                      '--amp', '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed  # the file is what was printed
    got = Config.fromfile(str(out))
    # independently: the file, the options, and what train.py adds
    ref = Config.fromfile(tiny_cfg)
    assert got.train_cfg.max_iters == 7 and ref.train_cfg.max_iters == 4
    assert got.my_key == 3
    assert got.work_dir == './work_dirs/tiny' and got.launcher == 'none'
    # --amp on a CPU: both optimisers of the recipe under bfloat16 autocast
    assert got.optim_wrapper.deblur.type == got.optim_wrapper.motion.type == \
        'BF16AutocastOptimWrapper'
    # train.py loads every checkpoint strictly (one hook for load_from and --resume)
    assert got.custom_hooks == ref.custom_hooks + [dict(type='mtu.StrictLoadCheckpointHook',
                                                        other_settings='warn')]
    for key in ref.keys():
        if key not in ('train_cfg', 'optim_wrapper', 'visualizer', 'vis_backends',
                       'custom_hooks'):
            assert got[key] == ref[key], key
    assert not [p for p in os.listdir(tmp_path) if '.tmp' in p]


def test_print_config_errors(tiny_cfg, tmp_path):
    tool = _module('misc/print_config.py')
    with pytest.raises(ConfigError, match='did you mean train_cfg.max_iters'):
        tool.main([tiny_cfg, '--cfg-options', 'max_iters=1'])
    with pytest.raises(ConfigError, match='is the input'):
        tool.main([tiny_cfg, '--out', tiny_cfg])
    other = tmp_path / 'other.py'  # e.g. a _base_ piece: replaced only with --overwrite
    other.write_text('x = 1\n')
    with pytest.raises(ConfigError, match='exists; pass --overwrite'):
        tool.main([tiny_cfg, '--out', str(other)])
    assert other.read_text() == 'x = 1\n'
    with pytest.raises(SystemExit) as exit_:
        tool.main([tiny_cfg, '--cfg-options', 'noequals'])
    assert exit_.value.code == 2
    before = open(tiny_cfg).read()
    proc = prewarmed.run([sys.executable, osp.join(ROOT, 'tools', 'misc', 'print_config.py'),
                          tiny_cfg, '--out', tiny_cfg], env=tool_env(), capture_output=True,
                         text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith('error: --out ')
    assert open(tiny_cfg).read() == before


def test_a_misspelt_top_level_key_is_named(tiny_cfg, tmp_path):
    # train_dataloder was ignored: the run trained with the base config's loader
    from mtu_toolkit.engine.config_loader import load_config
    cfg = tmp_path / 'mine.py'
    cfg.write_text(f"_base_ = [{tiny_cfg!r}]\ntrain_dataloder = dict(batch_size=2)\n")
    with pytest.raises(ConfigError, match=r"top-level key 'train_dataloder' .* did you mean "
                                          r"'train_dataloader'\?"):
        load_config(str(cfg))
    # keys of a config's own (not near a Runner key) stay allowed
    cfg.write_text(f"_base_ = [{tiny_cfg!r}]\ntrain_pipeline = []\ndata_root = 'x'\n")
    assert load_config(str(cfg)).data_root == 'x'


def test_a_plugins_syntax_error_is_named_in_the_plugin(tmp_path, monkeypatch):
    from mtu_toolkit.engine.config_loader import load_config
    (tmp_path / 'broken_plugin.py').write_text('x = 1\n\ndef f(:\n    pass\n')
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("custom_imports = dict(imports=['broken_plugin'], "
                   "allow_failed_imports=False)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r'its custom_imports fail: .*broken_plugin.py, line 3'):
        load_config(str(cfg))


# ---------------------------------------------------------------------------------------------
# flow colours


def test_flow_colors_of_the_four_directions_and_lengths():
    def color(u, v, m=1.0):
        return flow_to_color(np.array([[[u, v]]], float), m)[0, 0].astype(int).tolist()

    assert color(0, 0) == [255, 255, 255]          # no motion: white
    assert color(1, 0) == [255, 0, 0]              # right: red
    # a quarter turn is 55 / 4 = 13.75 steps of the wheel
    assert color(0, 1) == [255, 234, 0]            # down: 13.75 of 15 steps red -> yellow
    assert color(-1, 0) == [0, 197, 255]           # left: 27.5 = 25 + 2.5 of 11 cyan -> blue
    assert color(0, -1) == [103, 0, 255]           # up: 41.25 = 36 + 5.25 of 13 blue -> magenta
    assert color(0.5, 0) == [255, 128, 128]        # half length: half saturated
    assert color(2, 0) == [191, 0, 0]              # beyond the normalising length: darker
    assert color(3, 0, 6.0) == color(0.5, 0)       # only length / max_magnitude counts
    # by default the longest vector is fully saturated
    img = flow_to_color(np.array([[[4., 0.], [2., 0.]]]))
    assert img[0, 0].tolist() == [255, 0, 0] and img[0, 1].tolist() == [255, 128, 128]


def test_flow_color_wheel_is_continuous_and_key_matches():
    wheel = color_wheel()
    assert wheel.shape == (55, 3) and (wheel.max(1) == 1).all()  # fully saturated hues
    angles = np.linspace(-np.pi, np.pi, 721)
    ring = np.stack([np.cos(angles), np.sin(angles)], -1)[None]
    colors = flow_to_color(ring, 1.0)[0].astype(int)
    assert np.abs(np.diff(colors, axis=0)).max() <= 12  # no jumps, also where it wraps
    # opposite directions are far apart in colour
    assert np.abs(colors[:360] - colors[360:720]).sum(1).min() > 200
    key = flow_color_key(65)
    assert key[32, 32].tolist() == [255, 255, 255]             # centre: no motion
    assert key[32, 64].tolist() == [255, 0, 0]                 # right rim: red
    assert key[0, 0].tolist() == [255, 255, 255]               # outside: background
    with pytest.raises(ValueError, match=r'\(H, W, 2\)'):
        flow_to_color(np.zeros((4, 4, 3)))
    assert flow_to_color(np.full((2, 2, 2), np.nan)).tolist() == [[[255] * 3] * 2] * 2


# ---------------------------------------------------------------------------------------------
# browse_dataset


@pytest.fixture(scope='module')
def lmdb_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('browse')
    src, out = str(root / 'src'), str(root / 'lmdb')
    written = make_tree(src, 'gopro', frames=7)  # 20x28 random frames
    convert_dataset(src, out, with_flow=True)
    cfg = root / 'browse.py'
    data = dict(type='VideoDeblurDataset', data_root=out, backend='lmdb', with_flow=True)
    cfg.write_text(
        "default_scope = 'mtu'\n"
        f"train_dataloader = dict(dataset=dict({data!r}, num_frames=3, "
        "pipeline=[dict(type='ClipRandomCrop', size=12), dict(type='ClipGaussianNoise')]))\n"
        f"test_dataloader = dict(dataset=dict({data!r}, split='test'))\n")
    return str(cfg), out, written


def _find(image, panel):
    """(y, x) where ``panel`` occurs exactly in ``image``, or None."""
    res = cv2.matchTemplate(image.astype(np.float32), panel.astype(np.float32),
                            cv2.TM_SQDIFF)
    x, y = cv2.minMaxLoc(res)[2]  # the best match; exact or not, checked here
    h, w = panel.shape[:2]
    return (y, x) if np.array_equal(image[y:y + h, x:x + w], panel) else None


def test_browse_dataset_test_split_shows_the_right_frames(lmdb_data, tmp_path, capsys):
    cfg, out, written = lmdb_data
    tool = _module('analysis/browse_dataset.py')
    assert tool.main([cfg, '--split', 'test', '--num-samples', '5', '--scale', '1',
                      '--flow-max', '2', '--output-dir', str(tmp_path)]) == 0
    png = tmp_path / 'browse_test.png'
    assert f'{png}: 2 rows' in capsys.readouterr().out
    grid = cv2.imread(str(png))[..., ::-1]
    assert os.listdir(tmp_path) == ['browse_test.png']
    flow_store = LmdbStore(osp.join(out, 'test', 'flow.lmdb'))
    for seq in ('s0', 's1'):  # both sequences, their middle frame (3 of 7)
        blur_at = _find(grid, written[('test', seq, 'blur')][3])
        sharp_at = _find(grid, written[('test', seq, 'sharp')][3])
        flow = flow_store.get_flow(seq, 3)
        assert np.abs(flow).max() > 0.1
        flow_at = _find(grid, flow_to_color(flow, 2.0))
        assert blur_at and sharp_at and flow_at, (seq, blur_at, sharp_at, flow_at)
        # one row: blurry | sharp | flow, left to right
        assert blur_at[0] == sharp_at[0] == flow_at[0]
        assert blur_at[1] < sharp_at[1] < flow_at[1]
        # and not another frame of the sequence
        assert _find(grid, written[('test', seq, 'blur')][2]) is None


def test_browse_dataset_train_crops_pair_blur_and_sharp(lmdb_data, tmp_path):
    cfg, _, written = lmdb_data
    tool = _module('analysis/browse_dataset.py')
    dataset = tool.build_dataset(tool.load_config(cfg), 'train')
    rows = tool.collect_rows(dataset, num_samples=3, frames=3, seed=1)
    assert len(rows) == 9
    for r in rows:
        assert r['blur'].shape == r['sharp'].shape == (12, 12, 3) and r['flow'].shape == (12, 12,
                                                                                         2)
        # the crop of the blurry frame and of the sharp frame come from the same place
        blur_at = _find(written[('train', r['key'], 'blur')][r['frame']], r['blur'])
        sharp_at = _find(written[('train', r['key'], 'sharp')][r['frame']], r['sharp'])
        assert blur_at is not None and blur_at == sharp_at, r['label']
    # the same seed, the same samples; three frames of a clip are consecutive frames
    again = tool.collect_rows(dataset, num_samples=3, frames=3, seed=1)
    assert [r['label'] for r in again] == [r['label'] for r in rows]
    assert all(np.array_equal(a['blur'], b['blur']) for a, b in zip(rows, again))
    frames = [r['frame'] for r in rows]
    assert all(frames[i + 1] == frames[i] + 1 for i in (0, 1, 3, 4, 6, 7))
    grid, flow_max, scale = tool.render_grid(rows, 'title')
    assert scale == 11  # 12 px panels enlarged to >= 128 px
    assert flow_max == pytest.approx(max(np.hypot(*np.moveaxis(r['flow'], -1, 0)).max()
                                         for r in rows))
    assert _find(grid, np.repeat(np.repeat(rows[4]['sharp'], 11, 0), 11, 1)) is not None


def test_browse_dataset_pick_frames():
    tool = _module('analysis/browse_dataset.py')
    assert tool.pick_frames(7, 1) == [3]
    assert tool.pick_frames(13, 3) == [0, 6, 12]
    assert tool.pick_frames(3, 5) == [0, 1, 2]


def test_browse_dataset_errors(lmdb_data, tmp_path):
    cfg, _, _ = lmdb_data
    tool = _module('analysis/browse_dataset.py')
    (tmp_path / 'afile').write_text('x')
    with pytest.raises(ConfigError, match='`val_dataloader.dataset` is not set'):
        tool.main([cfg, '--split', 'val', '--output-dir', str(tmp_path)])
    with pytest.raises(ArgumentError, match='is a file, not a folder'):
        tool.main([cfg, '--output-dir', str(tmp_path / 'afile')])
    # what a user sees: one line
    proc = prewarmed.run([sys.executable, osp.join(ROOT, 'tools', 'analysis',
                                                   'browse_dataset.py'), cfg, '--cfg-options',
                          'train_dataloader.dataset.num_frame=2'], env=tool_env(),
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f'error: --cfg-options train_dataloader.dataset.num_frame: no such key in {cfg}; did you '
        'mean train_dataloader.dataset.num_frames? (to add a new key on purpose, write '
        '+train_dataloader.dataset.num_frame=...)']
    assert sorted(os.listdir(tmp_path)) == ['afile']


def test_browse_dataset_replaces_a_picture_only_with_overwrite(lmdb_data, tmp_path, capsys):
    cfg, _, _ = lmdb_data
    tool = _module('analysis/browse_dataset.py')
    png = tmp_path / 'browse_val.png'
    png.write_bytes(b'keep')
    # refused before any work: the val split (not set in the config) is not even looked at
    with pytest.raises(ArgumentError, match=f'^{re.escape(str(png))}: exists; pass --overwrite'):
        tool.main([cfg, '--split', 'val', '--output-dir', str(tmp_path)])
    assert png.read_bytes() == b'keep'
    (tmp_path / 'browse_test.png').write_bytes(b'keep')
    assert tool.main([cfg, '--split', 'test', '--num-samples', '1', '--output-dir', str(tmp_path),
                      '--overwrite']) == 0
    assert cv2.imread(str(tmp_path / 'browse_test.png')) is not None
    assert sorted(os.listdir(tmp_path)) == ['browse_test.png', 'browse_val.png']


# ---------------------------------------------------------------------------------------------
# analyze_logs


def _log_run(work_dir, stamp, train, val=(), **extra):
    """A scalars.json as mmengine's LocalVisBackend writes it during a training."""
    from mmengine.visualization import LocalVisBackend
    backend = LocalVisBackend(save_dir=osp.join(work_dir, stamp, 'vis_data'))
    for step, loss in train:
        backend.add_scalars(dict(lr=1e-3, loss=loss, time=0.5 + step / 100, **extra), step=step)
    for step, psnr in val:
        backend.add_scalars(dict(PSNR=psnr, time=0.01), step=step)
    return osp.join(work_dir, stamp, 'vis_data', 'scalars.json')


def test_analyze_logs_reads_runs_and_resumed_work_dirs(tmp_path):
    tool = _module('analysis/analyze_logs.py')
    work = str(tmp_path / 'mc')
    _log_run(work, '20240101_000000', [(1, 5.), (2, 4.), (3, 3.)], [(2, 20.)],
             loss_motion=1.)
    _log_run(work, '20240101_010000', [(3, 2.5), (4, 2.)], [(4, 22.)], loss_motion=0.5)
    run = tool.load_run(work)
    # the resumed file continues the first; step 3 logged twice keeps the later value
    assert tool.series(run, 'loss') == ([1, 2, 3, 4], [5., 4., 2.5, 2.])
    assert tool.series(run, 'PSNR') == ([2, 4], [20., 22.])
    assert tool.series(run, 'time')[0] == [1, 2, 3, 4]  # training times, not validation's
    assert tool.series(run, 'nope') is None
    assert tool.smooth([1., 2., 3., 4.], 2) == [1., 1.5, 2.5, 3.5]


def test_analyze_logs_plot_curve_two_runs(tmp_path, capsys):
    tool = _module('analysis/analyze_logs.py')
    steps = range(1, 101)
    a = _log_run(str(tmp_path / 'mtu2_mc'), '20240101_000000',
                 [(s, 1 / s) for s in steps], [(50, 20.), (100, 21.)], loss_motion=0.3)
    b = _log_run(str(tmp_path / 'mtu2_no_mc'), '20240101_000000',
                 [(s, 2 / s) for s in steps], [(50, 19.), (100, 20.)])
    out = tmp_path / 'curves.png'
    assert tool.main(['plot_curve', a, b, '--keys', 'loss', 'loss_motion', 'PSNR',
                      '--out', str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{b} has no 'loss_motion'" in captured.err  # the no-MC run: left out, noted
    assert '5 curves (loss, loss_motion, PSNR) of 2 runs' in captured.out
    img = cv2.imread(str(out))[..., ::-1].astype(int)
    assert img.shape[0] > img.shape[1]  # three panels stacked

    def pixels(hex_color):
        rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(img - rgb).sum(-1) < 40).sum())

    # matplotlib's first two colours: run 1 and run 2 are both drawn
    assert pixels('#1f77b4') > 500 and pixels('#ff7f0e') > 500
    assert sorted(os.listdir(tmp_path)) == ['curves.png', 'mtu2_mc', 'mtu2_no_mc']


def test_analyze_logs_bad_inputs(tmp_path, capsys):
    tool = _module('analysis/analyze_logs.py')
    good = _log_run(str(tmp_path / 'run'), '20240101_000000', [(1, 1.), (2, .5)])
    with pytest.raises(ArgumentError, match=r"--keys los: no run logs it; did you mean loss\?"):
        tool.main(['plot_curve', good, '--keys', 'los', '--out', str(tmp_path / 'c.png')])
    with pytest.raises(ArgumentError, match='--legend has 3 names; give one per run'):
        tool.main(['plot_curve', good, '--legend', 'a', 'b', 'c',
                   '--out', str(tmp_path / 'c.png')])
    with pytest.raises(ArgumentError, match='is the input'):
        tool.main(['plot_curve', good, '--out', good])
    with pytest.raises(ArgumentError, match="unknown picture format 'json'"):
        tool.main(['plot_curve', good, '--out', str(tmp_path / 'c.json')])
    with pytest.raises(ArgumentError, match='does not exist'):
        tool.main(['plot_curve', str(tmp_path / 'nope.json')])
    with pytest.raises(ArgumentError, match='no \\*/vis_data/scalars.json'):
        tool.main(['cal_train_time', str(tmp_path)])
    # a line in the middle that is not JSON: named; a cut-off last line: skipped with a note
    broken = tmp_path / 'broken.json'
    broken.write_text('{"loss": 1, "lr": 1, "step": 1}\n{"loss": 2, "st\n'
                      '{"loss": 3, "lr": 1, "step": 3}\n')
    with pytest.raises(ArgumentError, match=r'broken.json:2: not a JSON line'):
        tool.load_run(str(broken))
    broken.write_text('{"loss": 1, "lr": 1, "step": 1}\n{"loss": 2, "lr": 1, "st')
    assert tool.series(tool.load_run(str(broken)), 'loss') == ([1], [1.])
    assert 'broken.json:2: incomplete last line skipped' in capsys.readouterr().err
    broken.write_text('[1, 2]\n')
    with pytest.raises(ArgumentError, match=r'broken.json:1: expected a JSON object'):
        tool.load_run(str(broken))
    assert not (tmp_path / 'c.png').exists()


def test_analyze_logs_replaces_out_only_with_overwrite(tmp_path):
    tool = _module('analysis/analyze_logs.py')
    good = _log_run(str(tmp_path / 'run'), '20240101_000000', [(1, 1.), (2, .5)])
    out = tmp_path / 'c.png'
    out.write_bytes(b'keep')
    with pytest.raises(ArgumentError, match=f'^--out {re.escape(str(out))}: exists; pass '
                       '--overwrite'):
        tool.main(['plot_curve', good, '--out', str(out)])
    assert out.read_bytes() == b'keep'
    assert tool.main(['plot_curve', good, '--out', str(out), '--overwrite']) == 0
    assert cv2.imread(str(out)) is not None
    assert sorted(os.listdir(tmp_path)) == ['c.png', 'run']


def test_analyze_logs_without_matplotlib_says_so(tmp_path, monkeypatch):
    tool = _module('analysis/analyze_logs.py')
    good = _log_run(str(tmp_path / 'run'), '20240101_000000', [(1, 1.)])
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # import matplotlib -> ImportError
    with pytest.raises(ArgumentError, match='^plot_curve needs matplotlib: pip install '):
        tool.main(['plot_curve', good, '--out', str(tmp_path / 'c.png')])


def test_analyze_logs_cal_train_time(tmp_path, capsys):
    tool = _module('analysis/analyze_logs.py')
    path = _log_run(str(tmp_path / 'run'), '20240101_000000', [(10, 1.), (20, 1.), (30, 1.)],
                    [(30, 20.)])
    assert tool.main(['cal_train_time', path]) == 0
    out = capsys.readouterr().out
    times = [0.6, 0.7, 0.8]  # 0.5 + step / 100, as logged; the validation time is not counted
    mean = sum(times) / 3
    std = (sum((t - mean) ** 2 for t in times) / 3) ** 0.5
    assert f'average time per iteration: {mean:.4f} s (std {std:.4f})' in out
    assert 'slowest logged: step 30, 0.8000 s' in out and 'fastest logged: step 10, 0.6000 s' in out
    assert f'30 iterations at the average: {mean * 30 / 60:.1f} min' in out


def test_analyze_logs_cli_one_line_error(tmp_path):
    proc = prewarmed.run([sys.executable, osp.join(ROOT, 'tools', 'analysis', 'analyze_logs.py'),
                          'plot_curve', str(tmp_path / 'missing.json')], env=tool_env(),
                         capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f'error: {tmp_path / "missing.json"} does not exist']
