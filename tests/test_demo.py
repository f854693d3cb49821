"""tools/demo.py end to end at a tiny length: data, two trainings, evaluation, outputs, reuse."""
import json
import os
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
import torch

import prewarmed

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _demo(out):
    return prewarmed.run([sys.executable, osp.join(ROOT, 'tools', 'demo.py'), '--out-dir',
                          str(out), '--iters', '2'], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reuses_its_work(tmp_path):
    out = tmp_path / 'demo'
    proc = _demo(out)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((out / 'metrics.json').read_text())
    methods = ['blurry input', 'MTU2 without MC', 'MTU2 (ours, with MC)']
    assert sorted(result['per_sequence']) == ['chelsea_0', 'chelsea_1', 'chelsea_2']
    for per_method in result['per_sequence'].values():
        assert list(per_method) == methods
        assert all(15 < v['psnr'] < 60 and 0 < v['ssim'] <= 1 for v in per_method.values())
    overall = result['overall']
    assert result['gap_vs_input_db'] == pytest.approx(
        overall[methods[2]]['psnr'] - overall[methods[0]]['psnr'])
    assert result['gap_mc_vs_no_mc_db'] == pytest.approx(
        overall[methods[2]]['psnr'] - overall[methods[1]]['psnr'])
    assert 'MTU2 vs blurry input' in proc.stdout and 'MC vs no MC' in proc.stdout
    # independently, from the files the demo wrote: the blurry input's PSNR (numpy on the
    # PNG frames), the saved checkpoint's PSNR (loaded through the user API) and the
    # no-alignment score (GT t-1 against GT t, area-downsampled by 4)
    from mtu_toolkit.apis import init_restorer
    model = init_restorer(osp.join(ROOT, 'configs', 'demo', 'mtu2_synthetic.py'),
                          str(out / 'mtu2_demo.pth'))
    for seq in ('chelsea_0', 'chelsea_1'):
        folder = out / 'data' / 'synthetic' / 'test' / seq
        frames = {side: np.stack([cv2.imread(str(folder / side / f'{i:05d}.png'))[..., ::-1]
                                  for i in range(24)]).astype(np.float64) / 255
                  for side in ('input', 'GT')}
        mse = ((frames['input'] - frames['GT']) ** 2).mean(axis=(1, 2, 3))
        assert result['per_sequence'][seq]['blurry input']['psnr'] == pytest.approx(
            np.mean(10 * np.log10(1 / mse)), abs=1e-6)
        with torch.no_grad():
            restored = model.infer_clip(torch.from_numpy(frames['input']).float()
                                        .permute(0, 3, 1, 2)).double().numpy()
        mse = ((restored.transpose(0, 2, 3, 1) - frames['GT']) ** 2).mean(axis=(1, 2, 3))
        assert result['per_sequence'][seq][methods[2]]['psnr'] == pytest.approx(
            np.mean(10 * np.log10(1 / mse)), abs=1e-3)
    small = [cv2.resize(np.stack([cv2.imread(str(out / 'data' / 'synthetic' / 'test' / s / 'GT'
                                                 / f'{i:05d}.png'))[..., ::-1]
                                   for i in range(24)]).reshape(24 * 144, 192, 3)
                        .astype(np.float64) / 255, (48, 24 * 36), interpolation=cv2.INTER_AREA)
             .reshape(24, 36, 48, 3) for s in ('chelsea_0', 'chelsea_1', 'chelsea_2')]
    none = np.mean([10 * np.log10(1 / ((g[1:] - g[:-1]) ** 2).mean(axis=(1, 2, 3)))
                    for g in small])
    assert result['alignment_psnr_db']['no alignment'] == pytest.approx(none, abs=1e-3)
    assert result['gap_alignment_db'] == pytest.approx(
        result['alignment_psnr_db']['MC'] - result['alignment_psnr_db']['no alignment'])
    assert 'MC alignment vs no alignment' in (out / 'metrics.txt').read_text()
    # outputs: comparison strips (blurry | no MC | MTU2 | sharp), a playable video, a checkpoint
    strip = cv2.imread(str(out / 'comparisons' / 'chelsea_0.png'))
    assert strip is not None and strip.shape[0] == 144 and strip.shape[1] > 4 * 192
    video = cv2.VideoCapture(str(out / 'deblurred_chelsea_0.mp4'))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    video.release()
    assert (out / 'mtu2_demo.pth').stat().st_size > 1e6
    assert not [p for p in os.listdir(out) if '.tmp' in p]
    for name in ('mtu2_mc', 'mtu2_no_mc'):
        assert (out / 'work_dirs' / name / 'iter_2.pth').is_file()

    # a second run reuses the data and both checkpoints instead of training again
    again = _demo(out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count('==> reusing') == 4 and '==> training' not in again.stdout

    # a changed recipe (here: the renderer) starts over instead of reusing stale data
    recipe = json.loads((out / 'recipe.json').read_text())
    recipe['render'] = 'an older camera'
    (out / 'recipe.json').write_text(json.dumps(recipe))
    def start_over(iters):
        return prewarmed.run([sys.executable, '-c', 'import sys; sys.path.insert(0, "tools"); '
                              'import demo; demo.start_over_if_recipe_changed(sys.argv[1], '
                              'int(sys.argv[2]))', str(out), str(iters)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    (out / 'work_dirs' / 'mine').mkdir()  # a user's own run beside the demo's: kept
    proc = start_over(2)
    assert proc.returncode == 0 and 'starting over' in proc.stdout, proc.stderr
    assert not (out / 'data').exists() and os.listdir(out / 'work_dirs') == ['mine']
    assert json.loads((out / 'recipe.json').read_text())['render'] != 'an older camera'
    # so does another iteration count (the schedule ends with it), and only that
    assert 'starting over' not in start_over(2).stdout
    assert 'starting over' in start_over(3).stdout
    assert json.loads((out / 'recipe.json').read_text())['iterations'] == 3


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    """--out-dir pointed at a project folder (data/, work_dirs/, no recipe.json): one line,
    exit 1 before any work, and nothing in it removed or written."""
    (tmp_path / 'data' / 'GoPro').mkdir(parents=True)
    (tmp_path / 'data' / 'GoPro' / '000.png').write_bytes(b'a frame')
    (tmp_path / 'work_dirs' / 'run').mkdir(parents=True)
    before = sorted(str(p) for p in tmp_path.rglob('*'))
    proc = prewarmed.run([sys.executable, osp.join(ROOT, 'tools', 'demo.py'), '--out-dir',
                          str(tmp_path), '--iters', '1'], capture_output=True, text=True,
                         timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f'error: {tmp_path} is not empty and holds no recipe.json, so the demo did not make '
        'it: give a new or empty --out-dir (delete that folder first if an older demo made it)']
    assert sorted(str(p) for p in tmp_path.rglob('*')) == before


@pytest.mark.parametrize('case', ['file', 'under_a_file'])
def test_demo_names_an_out_dir_it_cannot_write(tmp_path, case):
    (tmp_path / 'afile').write_text('mine')
    out = tmp_path / 'afile' if case == 'file' else tmp_path / 'afile' / 'demo'
    proc = prewarmed.run([sys.executable, osp.join(ROOT, 'tools', 'demo.py'), '--out-dir',
                          str(out), '--iters', '1'], capture_output=True, text=True,
                         timeout=300)
    why = ('is a file; give a folder' if case == 'file'
           else 'cannot make the folder (Not a directory)')
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f'error: --out-dir {out}: {why}'], proc.stderr
    assert (tmp_path / 'afile').read_text() == 'mine'


def test_demo_help_says_what_out_dir_is():
    proc = prewarmed.run([sys.executable, osp.join(ROOT, 'tools', 'demo.py'), '--help'],
                         capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    options = ' '.join(proc.stdout.split('options:')[1].split())
    assert '--out-dir OUT_DIR folder of the data, trainings and results' in options
