"""Checkpoint safety and exact resume: weights-only loading, RNG state, SIGKILL then --resume."""
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs'))
from tiny_data import ROOT, make_dvd_tree, tool_env, write_config  # noqa: E402

from mtu_toolkit.engine import (find_resume_checkpoint, get_rng_state,  # noqa: E402
                                set_rng_state, setup_safe_loading)
import prewarmed  # noqa: E402


class Payload:
    """An arbitrary class: unpickling it must be refused."""

    def __reduce__(self):
        return (os.getcwd, ())


class SneakyGetattr:
    """Reaches past HistoryBuffer's statistics methods through getattr."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def test_mmengine_objects_load_weights_only(tmp_path):
    setup_safe_loading()
    hub = MessageHub.get_instance('test_resume_hub')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/lr', np.float64(1e-4))
    ckpt = dict(meta=dict(seed=np.int64(3), iter=7), message_hub=hub.state_dict(),
                state_dict=dict(w=torch.ones(2)), rng_state=get_rng_state())
    torch.save(ckpt, tmp_path / 'ok.pth')
    loaded = _load_checkpoint(str(tmp_path / 'ok.pth'))  # mmengine's path, as resume uses it
    assert loaded['meta']['seed'] == 3
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 0.5
    # loading must leave the process-wide allow-list in place for plain torch.load
    assert torch.load(tmp_path / 'ok.pth', weights_only=True)['meta']['iter'] == 7


@pytest.mark.parametrize('payload', [Payload(), SneakyGetattr()])
def test_foreign_objects_are_refused(tmp_path, payload):
    setup_safe_loading()
    torch.save(dict(state_dict=dict(w=torch.ones(2)), meta=dict(x=payload)), tmp_path / 'x.pth')
    with pytest.raises(RuntimeError, match='x.pth'):
        _load_checkpoint(str(tmp_path / 'x.pth'))


def test_rng_state_round_trip():
    state = get_rng_state()
    draws = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    set_rng_state(state)
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == draws


def test_find_resume_checkpoint(tmp_path):
    assert find_resume_checkpoint(str(tmp_path)) is None
    for n in (2, 10):
        (tmp_path / f'iter_{n}.pth').write_bytes(b'x')
    (tmp_path / 'iter_12.pth.tmp').write_bytes(b'half')
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_10.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    # killed after writing iter_11 but before updating last_checkpoint: iter_11 is whole
    (tmp_path / 'iter_11.pth').write_bytes(b'x')
    record = os.stat(tmp_path / 'last_checkpoint').st_mtime
    os.utime(tmp_path / 'iter_11.pth', (record + 1, record + 1))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_11.pth')
    # a run resumed from iter_10 recorded its own later: iter_11 is an abandoned branch
    os.utime(tmp_path / 'iter_11.pth', (record - 1, record - 1))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    os.utime(tmp_path / 'iter_11.pth', (record + 1, record + 1))
    (tmp_path / 'best.pth').write_bytes(b'x')  # a name of its own is taken as recorded
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'best.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'best.pth')
    (tmp_path / 'best.pth').unlink()
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_99.pth'))  # gone
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_11.pth')


def test_find_resume_checkpoint_skips_an_abandoned_branch(tmp_path):
    """The old run saved iter_2/4/6; a run resumed from iter_2 recorded it as its start, saved
    iter_3 (recorded), then iter_5, and was killed before recording it: iter_5 is the newest
    whole checkpoint of the live run, the older iter_6 the abandoned one's."""
    def write(name, when):
        (tmp_path / name).write_bytes(b'x')
        os.utime(tmp_path / name, (when, when))

    for n, when in ((2, 100), (4, 200), (6, 300)):
        write(f'iter_{n}.pth', when)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_3.pth'))
    write('iter_3.pth', 400)
    os.utime(tmp_path / 'last_checkpoint', (410, 410))
    write('iter_5.pth', 500)
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_5.pth')
    # the new run rewrote iter_4 but died before recording it: the record names its start
    # (iter_2, written when it started), not the abandoned iter_6
    for name in ('iter_3.pth', 'iter_5.pth'):
        (tmp_path / name).unlink()
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    os.utime(tmp_path / 'last_checkpoint', (350, 350))
    write('iter_4.pth', 450)
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_4.pth')



def test_find_resume_checkpoint_in_a_moved_folder(tmp_path):
    """last_checkpoint holds an absolute path: in a moved folder the file of that name is
    taken (the highest number was: an abandoned branch's)."""
    old = tmp_path / 'run'
    old.mkdir()
    for n, when in ((2, 100), (6, 200), (3, 300)):
        (old / f'iter_{n}.pth').write_bytes(b'x')
        os.utime(old / f'iter_{n}.pth', (when, when))
    (old / 'last_checkpoint').write_text(str(old / 'iter_3.pth'))
    os.utime(old / 'last_checkpoint', (310, 310))
    assert find_resume_checkpoint(str(old)) == str(old / 'iter_3.pth')
    moved = tmp_path / 'moved'
    old.rename(moved)
    assert find_resume_checkpoint(str(moved)) == str(moved / 'iter_3.pth')


def _train_cmd(cfg, work, *extra):
    return [sys.executable, os.path.join(ROOT, 'tools', 'train.py'), cfg, '--work-dir',
            str(work), *extra]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    iters = 24
    data = make_dvd_tree(str(tmp_path / 'data'))
    cfg = write_config(str(tmp_path / 'tiny.py'), data, max_iters=iters, val_interval=1000,
                       ckpt_interval=1)
    env = tool_env()
    ref = prewarmed.run(_train_cmd(cfg, tmp_path / 'ref'), env=env, capture_output=True,
                        text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]

    work = tmp_path / 'work'
    proc = subprocess.Popen(_train_cmd(cfg, work), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (work / 'iter_2.pth').exists() and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, 'training ended before it could be killed'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.stem.split('_')[1]) for p in work.glob('iter_*.pth'))
    assert killed_at < iters

    resumed = prewarmed.run(_train_cmd(cfg, work, '--resume'), env=env, capture_output=True,
                            text=True, timeout=300)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    start = int(log.split('resumed epoch: 0, iter: ')[1].split()[0])
    assert start == killed_at  # the newest whole checkpoint
    trained = [int(n) for n in re.findall(r'Iter\(train\) \[\s*(\d+)/%d\]' % iters, log)]
    assert trained == list(range(start + 1, iters + 1))  # nothing skipped, nothing twice
    setup_safe_loading()
    a = torch.load(tmp_path / 'ref' / f'iter_{iters}.pth', weights_only=True)
    b = torch.load(work / f'iter_{iters}.pth', weights_only=True)
    assert b['meta']['iter'] == iters
    for key, value in a['state_dict'].items():  # same data, same steps: the same weights
        assert torch.allclose(value, b['state_dict'][key], atol=1e-6), key
    # both optimisers of the paper's recipe resume exactly: the same moments, the same steps
    assert set(a['optimizer']) == set(b['optimizer']) == {'deblur', 'motion'}
    for name in ('deblur', 'motion'):
        opt_a, opt_b = a['optimizer'][name], b['optimizer'][name]
        for group_a, group_b in zip(opt_a['param_groups'], opt_b['param_groups']):
            assert group_a['lr'] == group_b['lr']
        for pid, state in opt_a['state'].items():
            assert state['step'] == opt_b['state'][pid]['step']
            assert torch.allclose(state['exp_avg'], opt_b['state'][pid]['exp_avg'], atol=1e-6)
    assert a['param_schedulers'] == b['param_schedulers']


def _train_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'train_tool', os.path.join(ROOT, 'tools', 'train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.mark.parametrize('given', ['None', '7', '1234'])
def test_resume_takes_the_seed_of_the_run_it_continues(tmp_path, capsys, given):
    """The training loader's sampler draws its order from the seed before mmengine adopts the
    checkpoint's: resumed under no seed (mmengine draws one) or another one, the run drew other
    clips than the run it continues (its weights differed by 1.8e-3 after 6 iterations)."""
    data = make_dvd_tree(str(tmp_path / 'data'))
    cfg = write_config(str(tmp_path / 'tiny.py'), data)
    ckpt = tmp_path / 'work' / 'iter_2.pth'
    ckpt.parent.mkdir()
    torch.save(dict(meta=dict(seed=1234, iter=2), state_dict={}), ckpt)
    tool = _train_tool()
    args = tool.parse_args([cfg, '--work-dir', str(tmp_path / 'work'), '--resume',
                            '--cfg-options', f'randomness.seed={given}'])
    (tmp_path / 'work' / 'last_checkpoint').write_text(str(ckpt))
    built = tool.build_cfg(args)
    assert built.resume and built.load_from == str(ckpt)
    assert built.randomness.seed == 1234
    out = capsys.readouterr().out
    told = f'--resume: the seed of {ckpt} (1234) is used, not 7:'
    assert (told in out) == (given == '7')


def test_resume_without_a_checkpoint_names_load_from(tmp_path, capsys):
    data = make_dvd_tree(str(tmp_path / 'data'))
    cfg = write_config(str(tmp_path / 'tiny.py'), data)
    tool = _train_tool()
    args = tool.parse_args([cfg, '--work-dir', str(tmp_path / 'empty'), '--resume',
                            '--cfg-options', 'load_from=/models/pretrained.pth'])
    built = tool.build_cfg(args)
    assert not built.get('resume') and built.load_from == '/models/pretrained.pth'
    assert (f'--resume: no checkpoint in {tmp_path / "empty"}, fine-tuning from load_from '
            '/models/pretrained.pth') in capsys.readouterr().out


def test_resume_seed_reaches_a_config_without_randomness(tmp_path):
    """setdefault on an mmengine Config gave a detached dict: the checkpoint's seed was lost
    for a config that does not inherit default_runtime's randomness."""
    from mmengine.config import Config
    from mtu_toolkit.engine.checkpoint import resume_seed
    ckpt = tmp_path / 'iter_2.pth'
    torch.save(dict(meta=dict(seed=1234, iter=2), state_dict={}), ckpt)
    cfg = Config(dict(model=dict(type='X')))
    assert resume_seed(cfg, str(ckpt)) == (1234, None)
    assert cfg.randomness.seed == 1234
    cfg = Config(dict(randomness=dict(seed=5, deterministic=True)))
    assert resume_seed(cfg, str(ckpt)) == (1234, 5)
    assert cfg.randomness == dict(seed=1234, deterministic=True)
