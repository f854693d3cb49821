"""tools/train.py and tools/test.py end to end on a tiny generated DVD-layout dataset."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.optim import OptimWrapper
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs'))
from tiny_data import (ROOT, TinyDVDDataset, interruptible, make_dvd_tree, tool_env,  # noqa: E402
                       write_config)

from mtu_toolkit.engine import BF16AutocastOptimWrapper, setup_safe_loading  # noqa: E402
from mtu_toolkit.registry import MODELS  # noqa: E402
import prewarmed  # noqa: E402


def _run(args, cwd):
    proc = prewarmed.run([sys.executable] + args, cwd=cwd, env=tool_env(),
                         capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_then_test(tmp_path):
    data = make_dvd_tree(str(tmp_path / 'data'))
    cfg = write_config(str(tmp_path / 'tiny.py'), data, max_iters=4, val_interval=2)
    work = tmp_path / 'work'
    log = _run([os.path.join(ROOT, 'tools', 'train.py'), cfg, '--work-dir', str(work),
                '--cfg-options', 'optim_wrapper.deblur.optimizer.lr=2e-4'], tmp_path)
    assert 'Iter(train) [4/4]' in log and 'time: ' in log and 'data_time: ' in log
    assert 'PSNR: ' in log  # validation ran
    for warning in ('Failed to import', 'Failed to search registry', 'prefix is not set'):
        assert warning not in log  # (mmengine's, for a scope or metric set up wrong)
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_4.pth')
    setup_safe_loading()  # mmengine's message hub objects, allow-listed
    ckpt = torch.load(work / 'iter_4.pth', weights_only=True)
    assert ckpt['meta']['iter'] == 4
    assert ckpt['optimizer']['deblur']['param_groups'][0]['lr'] == pytest.approx(2e-4)
    assert ckpt['optimizer']['motion']['param_groups'][0]['lr'] == pytest.approx(1e-6)
    assert not list(work.glob('*.tmp*'))
    # validation strips from the visualisation hook
    assert list(work.glob('*/vis_data/vis_image/val_video0_*.png'))

    out_dir, test_work = tmp_path / 'restored', tmp_path / 'test_work'
    log = _run([os.path.join(ROOT, 'tools', 'test.py'), cfg, str(work / 'iter_4.pth'),
                '--work-dir', str(test_work), '--out-dir', str(out_dir)], tmp_path)
    report = json.loads((test_work / 'test_results.json').read_text())
    assert [r['sequence'] for r in report['sequences']] == ['video0', 'video1']
    assert report['overall']['frames'] == 12
    for row in report['sequences']:
        assert f"{row['sequence']}" in log and f"{row['PSNR']:.4f}" in log
    assert f"{report['overall']['PSNR']:.4f}" in log
    csv_lines = (test_work / 'test_results.csv').read_text().strip().splitlines()
    assert csv_lines[0] == 'sequence,frames,PSNR,SSIM,protocol,align'
    assert csv_lines[-1].startswith('overall,12,') and csv_lines[-1].endswith(',toolkit,False')
    assert report['protocol']['protocol'] == 'toolkit' and 'protocol: toolkit (' in log
    assert sorted(os.listdir(out_dir / 'video1')) == [f'{i:05d}.png' for i in range(6)]
    assert report['checkpoint'] == str(work / 'iter_4.pth') and report['config'] == cfg
    # each run's tables also in its log folder: a later test in this work dir loses none
    kept = list(test_work.glob('*/test_results.json'))
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == report
    # the frames of an earlier test are replaced only with --overwrite, checked before any work
    again = [os.path.join(ROOT, 'tools', 'test.py'), cfg, str(work / 'iter_2.pth'),
             '--work-dir', str(test_work), '--out-dir', str(out_dir)]
    (out_dir / 'video1' / '00000.png').write_bytes(b'mine')
    proc = prewarmed.run([sys.executable] + again, cwd=tmp_path, env=tool_env(),
                         capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f'error: --out-dir {out_dir}: holds files (restored frames of an earlier test?); pass '
        '--overwrite to replace it, or give a new folder']
    assert (out_dir / 'video1' / '00000.png').read_bytes() == b'mine'
    assert len(list(test_work.glob('*/test_results.json'))) == 1
    _run(again + ['--overwrite'], tmp_path)
    assert (out_dir / 'video1' / '00000.png').read_bytes()[:4] == b'\x89PNG'
    assert not list(tmp_path.glob('restored.*'))  # no temporary or moved-aside folder left
    assert json.loads((test_work / 'test_results.json').read_text())['checkpoint'] == str(
        work / 'iter_2.pth')
    assert len(list(test_work.glob('*/test_results.json'))) == 2

    # independent reference: the checkpoint's model run here, scored by scikit-image
    model = MODELS.build(dict(
        type='MTURestorer', motion_loss=None,
        backbone=dict(type='MTUNet', num_units=1, channels=8, num_blocks=1,
                      mc_head=dict(type='CorrelationMCHead', max_displacement=3)))).eval()
    model.load_state_dict(ckpt['state_dict'])
    sample = TinyDVDDataset(data, split='test')[1]
    frames = sample['inputs'][2:-2].float() / 255
    pred = model.infer_clip(frames).clamp(0, 1).numpy().transpose(0, 2, 3, 1).astype(np.float64)
    gt = (sample['data_samples']['gt'].float() / 255).numpy().transpose(0, 2, 3, 1)
    ref = [(peak_signal_noise_ratio(g, p, data_range=1),
            structural_similarity(p, g, channel_axis=-1, data_range=1, gaussian_weights=True,
                                  sigma=1.5, use_sample_covariance=False))
           for p, g in zip(pred, gt)]
    frames_1 = [r for r in report['frames'] if r['sequence'] == 'video1']
    assert [r['frame'] for r in frames_1] == list(range(6))
    for r, (p, s) in zip(frames_1, ref):
        assert r['PSNR'] == pytest.approx(p, abs=1e-3) and r['SSIM'] == pytest.approx(s, abs=1e-4)


def test_bf16_autocast_wrapper_trains_on_cpu():
    model = MODELS.build(dict(
        type='MTURestorer', motion_loss=None,
        backbone=dict(type='MTUNet', num_units=1, channels=8, num_blocks=1,
                      mc_head=dict(type='CorrelationMCHead', max_displacement=3))))
    wrapper = BF16AutocastOptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3))
    assert isinstance(wrapper, OptimWrapper)
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
        assert torch.get_autocast_dtype('cpu') == torch.bfloat16
    before = [p.detach().clone() for p in model.parameters()]
    data = dict(inputs=torch.randint(0, 256, (1, 6, 3, 16, 16), dtype=torch.uint8),
                data_samples=dict(gt=torch.randint(0, 256, (1, 2, 3, 16, 16),
                                                   dtype=torch.uint8)))
    log = model.train_step(data, wrapper)
    assert torch.isfinite(log['loss'])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    data = make_dvd_tree(str(tmp_path / 'data'), videos=1, frames=2)
    cfg = write_config(str(tmp_path / 'tiny.py'), data)
    proc = prewarmed.run([sys.executable, os.path.join(ROOT, 'tools', 'test.py'), cfg,
                          str(tmp_path / 'nope.pth')], env=tool_env(), capture_output=True,
                         text=True, timeout=120)
    assert proc.returncode != 0 and 'nope.pth does not exist' in proc.stderr


@pytest.mark.slow
def test_test_interrupted_leaves_no_frames_and_says_so(tmp_path):
    """Ctrl-C while test.py restores: one line, exit 130, and no --out-dir (it held 2 of 6
    sequences, looking like a result, after a 13-frame traceback)."""
    import glob
    import signal
    import time
    data = make_dvd_tree(str(tmp_path / 'data'), videos=6, frames=10, size=(128, 160))
    cfg = write_config(str(tmp_path / 'tiny.py'), data)
    ckpt = tmp_path / 'model.pth'
    model = MODELS.build(dict(
        type='MTURestorer', backbone=dict(type='MTUNet', num_units=1, channels=8, num_blocks=1,
                                          mc_head=dict(type='CorrelationMCHead',
                                                       max_displacement=3))))
    torch.save(dict(meta={}, state_dict=model.state_dict()), ckpt)
    out = tmp_path / 'restored'
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'tools', 'test.py'), cfg,
                             str(ckpt), '--work-dir', str(tmp_path / 'work'), '--out-dir',
                             str(out)], cwd=tmp_path, env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    deadline = time.time() + 120
    while not glob.glob(f'{out}.tmp-mtu*/video0') and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert err.strip().splitlines() == ['interrupted; no results or frames written']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data', 'model.pth', 'tiny.py',
                                                          'work']
    assert not (tmp_path / 'work' / 'test_results.json').exists()
