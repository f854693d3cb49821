"""What a user does with checkpoints, and what must not happen: a plain state dict is loaded
(not silently dropped), a best checkpoint cannot be resumed as if it held the training state,
a run forked from another run's checkpoint leaves that run's files alone, unreadable files and
interruptions end in one line with nothing half-written, and a protocol set in the config gets
its crop as the command-line one does."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs'))
from tiny_data import ROOT, interruptible, make_dvd_tree, tool_env, write_config  # noqa: E402

from mtu_toolkit.engine import setup_safe_loading  # noqa: E402
import prewarmed  # noqa: E402

TRAIN = os.path.join(ROOT, 'tools', 'train.py')
TEST = os.path.join(ROOT, 'tools', 'test.py')


def _run(*args, cwd):
    return prewarmed.run([sys.executable, *map(str, args)], cwd=cwd, env=tool_env(),
                         capture_output=True, text=True, timeout=300)


def _psnr(work):
    return json.loads((work / 'test_results.json').read_text())['overall']['PSNR']


@pytest.fixture(scope='module')
def run_a(tmp_path_factory):
    """A tiny training: iter_2, iter_4 and a best_PSNR checkpoint in ``a/``."""
    tmp = tmp_path_factory.mktemp('ckpt')
    data = make_dvd_tree(str(tmp / 'data'))
    cfg = write_config(str(tmp / 'tiny.py'), data, max_iters=4, val_interval=2)
    proc = _run(TRAIN, cfg, '--work-dir', tmp / 'a', cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, cfg


@pytest.mark.slow
def test_a_plain_state_dict_is_loaded_not_dropped(run_a):
    tmp, cfg = run_a
    setup_safe_loading()
    ckpt = torch.load(tmp / 'a' / 'iter_4.pth', weights_only=True)
    torch.save(ckpt['state_dict'], tmp / 'plain.pth')  # torch.save(model.state_dict())
    scores = []
    for name, path in (('full', tmp / 'a' / 'iter_4.pth'), ('plain', tmp / 'plain.pth')):
        proc = _run(TEST, cfg, path, '--work-dir', tmp / f't_{name}', cwd=tmp)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert 'missing keys' not in proc.stdout + proc.stderr
        scores.append(_psnr(tmp / f't_{name}'))
    assert scores[0] == scores[1]


@pytest.mark.slow
def test_a_checkpoint_of_other_network_settings_is_named(run_a, tmp_path):
    """The weights fit a config with another search range (no shape shows it): testing and
    resuming under it stop with one line naming the setting; fine-tuning from it (load_from)
    says so in one warning and trains."""
    tmp, cfg = run_a
    setup_safe_loading()
    ckpt = torch.load(tmp / 'a' / 'iter_4.pth', weights_only=True)
    assert ckpt['meta']['network_settings']['mc_head'] == dict(
        type='CorrelationMCHead', max_displacement=3, smooth=5)
    other = ['--cfg-options', 'model.backbone.mc_head.max_displacement=2']
    expect = ('the checkpoint was trained with other network settings, which its weights load '
              'into without a mismatch: mc_head.max_displacement 3 in the checkpoint, 2 in the '
              'config')
    proc = _run(TEST, cfg, tmp / 'a' / 'iter_4.pth', '--work-dir', tmp_path / 't', *other,
                cwd=tmp)
    assert proc.returncode == 4 and proc.stderr.strip().endswith(expect), proc.stderr[-3000:]
    # the config copy train.py wrote into its work dir (its hook says 'warn') tests alike
    proc = _run(TEST, tmp / 'a' / 'tiny.py', tmp / 'a' / 'iter_4.pth', '--work-dir',
                tmp_path / 'd', *other, cwd=tmp)
    assert proc.returncode == 4 and proc.stderr.strip().endswith(expect), proc.stderr[-3000:]
    proc = _run(TRAIN, cfg, '--work-dir', tmp_path / 'r', '--resume', tmp / 'a' / 'iter_2.pth',
                *other, cwd=tmp)
    assert proc.returncode == 4 and proc.stderr.strip().endswith(expect), proc.stderr[-3000:]
    proc = _run(TRAIN, cfg, '--work-dir', tmp_path / 'f', *other,
                f'load_from={tmp / "a" / "iter_4.pth"}', cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'{expect} (fine-tuning under the config\'s settings)' in proc.stdout + proc.stderr
    assert (tmp_path / 'f' / 'iter_4.pth').is_file()


@pytest.mark.slow
def test_resuming_says_which_schedule_it_restores(run_a, tmp_path):
    """mmengine resumes the saved optimiser and scheduler states: an edited learning rate is
    not used, and one warning says so."""
    tmp, cfg = run_a
    proc = _run(TRAIN, cfg, '--work-dir', tmp_path / 'r', '--resume', tmp / 'a' / 'iter_2.pth',
                '--cfg-options', 'optim_wrapper.deblur.optimizer.lr=0.01', cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ('resuming restores the optimisers and learning-rate schedule saved in the '
            "checkpoint, not the config's: optimizer.deblur.lr 0.0001 in the checkpoint, 0.01 "
            'in the config (to train with the new ones, start from it with load_from)'
            ) in proc.stdout + proc.stderr
    proc = _run(TRAIN, cfg, '--work-dir', tmp_path / 's', '--resume', tmp / 'a' / 'iter_2.pth',
                cwd=tmp)
    assert proc.returncode == 0 and 'resuming restores' not in proc.stdout + proc.stderr
    # a longer training: the schedule's implicit end (the last iteration) stays the saved one
    proc = _run(TRAIN, cfg, '--work-dir', tmp_path / 'l', '--resume', tmp / 'a' / 'iter_2.pth',
                '--cfg-options', 'train_cfg.max_iters=6', cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("not the config's: param_scheduler.end 4 in the checkpoint, 6 in the config (to "
            'train') in proc.stdout + proc.stderr


def test_each_tool_sets_the_strict_loading_it_needs():
    """A config copy that already holds the hook (train.py's, with 'warn') gets the calling
    tool's setting, once."""
    from mmengine.config import Config

    from mtu_toolkit.engine.hooks import add_strict_loading
    cfg = Config(dict(custom_hooks=[dict(type='mtu.StrictLoadCheckpointHook',
                                         other_settings='warn'), dict(type='EMAHook')]))
    add_strict_loading(cfg)
    assert cfg.custom_hooks == [dict(type='mtu.StrictLoadCheckpointHook',
                                     other_settings='refuse'), dict(type='EMAHook')]
    add_strict_loading(cfg, other_settings='warn')
    assert [h.get('other_settings') for h in cfg.custom_hooks] == ['warn', None]


def test_the_schedule_record_names_added_keys_and_the_implicit_end():
    """A key that only one side sets is a change (mmengine restores the saved value over an
    added ``weight_decay``), and a scheduler without ``end`` ends at the last iteration."""
    from mmengine.config import Config

    from mtu_toolkit.engine.hooks.strict_load_hook import schedule_record
    from mtu_toolkit.models.network_settings import record_differences
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'mtu', 'mtu2_dvd.py'))
    saved = schedule_record(cfg)
    assert saved['param_scheduler']['end'] == cfg.train_cfg.max_iters
    cfg.optim_wrapper.deblur.optimizer.weight_decay = 0.1
    cfg.train_cfg.max_iters = 200000
    assert record_differences(saved, schedule_record(cfg), unset='unset') == [
        'optimizer.deblur.weight_decay unset in the checkpoint, 0.1 in the config',
        'param_scheduler.end 100000 in the checkpoint, 200000 in the config']
    assert record_differences(saved, schedule_record(cfg)) == [
        'param_scheduler.end 100000 in the checkpoint, 200000 in the config']


@pytest.mark.slow
def test_an_ema_checkpoint_is_not_resumed_without_its_hook(tmp_path):
    data = make_dvd_tree(str(tmp_path / 'data'))
    cfg = write_config(str(tmp_path / 'ema.py'), data, max_iters=2, val_interval=2,
                       custom_hooks=[dict(type='EMAHook', momentum=0.5)])
    plain = write_config(str(tmp_path / 'plain.py'), data, max_iters=4, val_interval=2)
    assert _run(TRAIN, cfg, '--work-dir', tmp_path / 'a', cwd=tmp_path).returncode == 0
    proc = _run(TRAIN, plain, '--work-dir', tmp_path / 'b', '--resume',
                tmp_path / 'a' / 'iter_2.pth', cwd=tmp_path)
    assert proc.returncode == 4 and proc.stderr.strip().endswith(
        'it was trained with EMAHook (its state_dict holds the averaged weights, '
        'ema_state_dict the trained ones): keep EMAHook in custom_hooks to resume, or start a '
        'training from it with load_from'), proc.stderr[-3000:]
    assert not (tmp_path / 'b' / 'iter_4.pth').exists()


@pytest.mark.slow
def test_a_best_checkpoint_cannot_be_resumed_and_a_fork_keeps_the_old_runs_files(run_a):
    tmp, cfg = run_a
    best = sorted((tmp / 'a').glob('best_PSNR_iter_*.pth'))
    assert len(best) == 1
    proc = _run(TRAIN, cfg, '--work-dir', tmp / 'r', '--resume', best[0], cwd=tmp)
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert 'has no optimizer or param_schedulers state' in proc.stderr
    assert 'Traceback' not in proc.stderr
    # a new run resumed from run a's iter_2 (a fork) finds a better PSNR: run a's best stays
    before = sorted(p.name for p in (tmp / 'a').iterdir())
    proc = _run(TRAIN, cfg, '--work-dir', tmp / 'b', '--resume', tmp / 'a' / 'iter_2.pth',
                '--cfg-options', 'train_cfg.max_iters=6', cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp / 'a').iterdir()) == before
    assert list((tmp / 'b').glob('best_PSNR_iter_*.pth'))


@pytest.mark.slow
def test_a_run_resumed_from_an_earlier_checkpoint_records_it_as_its_start(run_a, tmp_path):
    """Going back to iter_2 of a folder that holds iter_4: iter_4 is abandoned from the start,
    and --resume without a value never goes back to it (here the run stops before it saves)."""
    import shutil

    from mtu_toolkit.engine import find_resume_checkpoint
    tmp, cfg = run_a
    work = tmp_path / 'w'
    shutil.copytree(tmp / 'a', work)  # (mtimes kept)
    record = work / 'last_checkpoint'
    stat = record.stat()
    record.write_text(str(work / 'iter_4.pth'))
    os.utime(record, (stat.st_atime, stat.st_mtime))
    assert find_resume_checkpoint(str(work)) == str(work / 'iter_4.pth')
    proc = _run(TRAIN, cfg, '--work-dir', work, '--resume', work / 'iter_2.pth',
                '--cfg-options', 'train_cfg.max_iters=2', cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert find_resume_checkpoint(str(work)) == str(work / 'iter_2.pth')


@pytest.mark.slow
def test_unreadable_checkpoints_are_one_line(run_a):
    tmp, cfg = run_a
    (tmp / 'empty.pth').write_bytes(b'')
    for path, why in ((tmp / 'empty.pth', 'the file is empty'),
                      (tmp / 'a', 'is a folder, not a checkpoint file')):
        proc = _run(TEST, cfg, path, '--work-dir', tmp / 'u', cwd=tmp)
        assert proc.returncode != 0 and why in proc.stderr, proc.stderr[-3000:]
        assert 'Traceback' not in proc.stderr


@pytest.mark.slow
def test_a_protocol_set_in_the_config_gets_its_crop(tmp_path):
    data = make_dvd_tree(str(tmp_path / 'data'), size=(30, 34))  # not a multiple of 4
    cfg = write_config(str(tmp_path / 'tiny.py'), data, max_iters=1, val_interval=100,
                       test_dataloader=dict(
                           batch_size=1, num_workers=0, collate_fn=dict(type='default_collate'),
                           sampler=dict(type='DefaultSampler', shuffle=False),
                           dataset=dict(type='VideoDeblurDataset', data_root=data, split='test',
                                        backend='disk', layout='dvd')))
    torch.manual_seed(0)
    from mtu_toolkit.registry import MODELS
    model = MODELS.build(dict(
        type='MTURestorer', motion_loss=None,
        backbone=dict(type='MTUNet', num_units=1, channels=8, num_blocks=1,
                      mc_head=dict(type='CorrelationMCHead', max_displacement=3))))
    torch.save(dict(state_dict=model.state_dict()), tmp_path / 'w.pth')
    scores = {}
    for how, extra in (('flag', ['--protocol', 'reference']),
                       ('config', ['--cfg-options', '+test_evaluator.protocol=reference'])):
        proc = _run(TEST, cfg, tmp_path / 'w.pth', '--work-dir', tmp_path / how, *extra,
                    cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        scores[how] = _psnr(tmp_path / how)
    assert scores['flag'] == scores['config']
    proc = _run(TEST, cfg, tmp_path / 'w.pth', '--work-dir', tmp_path / 'bad',
                '--cfg-options', '+test_evaluator.protocol=matlabb', cwd=tmp_path)
    assert proc.returncode == 2 and "unknown evaluation protocol 'matlabb'" in proc.stderr
    assert 'Traceback' not in proc.stderr
    # train.py gives the validation its protocol's crop too (it failed at the first one)
    val = tmp_path / 'val.py'
    val.write_text(f"_base_ = ['tiny.py']\n"
                   f"val_dataloader = dict(dataset=dict(_delete_=True, type='VideoDeblurDataset', "
                   f"data_root={data!r}, split='test', backend='disk', layout='dvd'))\n"
                   "val_evaluator = dict(protocol='reference')\n"
                   "train_cfg = dict(val_interval=1)\n")
    proc = _run(TRAIN, val, '--work-dir', tmp_path / 'train', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'PSNR' in proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_training_names_its_last_checkpoint_and_leaves_no_temporary(tmp_path, sig):
    data = make_dvd_tree(str(tmp_path / 'data'))
    cfg = write_config(str(tmp_path / 'tiny.py'), data, max_iters=400, val_interval=1000,
                       ckpt_interval=1)
    work = tmp_path / 'w'
    proc = subprocess.Popen([sys.executable, TRAIN, cfg, '--work-dir', str(work)],
                            cwd=tmp_path, env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    deadline = time.time() + 200
    while not (work / 'iter_3.pth').exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err[-3000:]
    assert 'Traceback' not in err
    assert 'the last complete checkpoint is' in err and '--resume continues from it' in err
    assert not list(work.glob('*.tmp*'))
    # a temporary a hard kill left is removed when training starts again
    (work / 'iter_99.pth.tmp').write_bytes(b'half')
    proc = _run(TRAIN, cfg, '--work-dir', work, '--resume', '--cfg-options',
                'train_cfg.max_iters=5', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(work.glob('*.tmp*'))


def test_a_full_disk_while_training_is_one_line_and_leaves_no_temporary(tmp_path):
    # mmengine's save raised the OSError through the Runner: a traceback
    from tiny_data import file_size_limit
    data = make_dvd_tree(str(tmp_path / 'data'))
    cfg = write_config(str(tmp_path / 'tiny.py'), data, max_iters=2, ckpt_interval=1)
    work = tmp_path / 'w'
    proc = prewarmed.run([sys.executable, TRAIN, cfg, '--work-dir', str(work)], cwd=tmp_path,
                         env=tool_env(), capture_output=True, text=True, timeout=300,
                         preexec_fn=file_size_limit(20000))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1] == (
        f'error: [Errno 27] File too large (writing in {work}); no checkpoint was saved yet')
    assert 'Traceback' not in proc.stderr
    assert not list(work.glob('*.pth*'))
    # a missing dataset, found when training starts, is not blamed on the work dir
    cfg = write_config(str(tmp_path / 'gone.py'), str(tmp_path / 'no_data'), max_iters=2)
    proc = prewarmed.run([sys.executable, TRAIN, cfg, '--work-dir', str(tmp_path / 'w2')],
                         cwd=tmp_path, env=tool_env(), capture_output=True, text=True,
                         timeout=300)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.splitlines()[-1]
    assert str(tmp_path / 'no_data') in line and 'writing in' not in line, line


def test_an_interruption_turned_into_another_error_is_found():
    from mtu_toolkit.engine.config_loader import Terminated, interruption_of
    try:
        try:
            raise Terminated()
        except:  # noqa: E722 - as mmengine's config formatting does
            raise SyntaxError('Failed to format the config file')
    except SyntaxError as err:
        assert isinstance(interruption_of(err), Terminated)
    assert interruption_of(ValueError('x')) is None
