"""The embedded default: deblur real footage end to end on a CPU, with no downloads.

    python tools/demo.py [--out-dir outputs/demo] [--iters ITERS]

1. renders blurry/sharp sequences from the real photographs scikit-image ships (camera shake,
   averaged in linear RGB as GoPro/DVD were made), DVD layout;
2. converts them to LMDB with sharp-frame flow for the motion loss;
3. trains MTU2 (configs/demo/mtu2_synthetic.py) and, side by side, MTU2 with the `none` MC head
   through tools/train.py (mmengine Runner; resumable);
4. evaluates blurry input, MTU2 without MC and MTU2 with MC on the held-out sequences, and writes
   metrics (JSON + table), comparison images, a deblurred video and the checkpoint.
Re-running reuses every finished step; an interrupted run continues where it stopped.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import threading
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    import cv2
    import numpy as np
    import torch
    from mmengine.config import Config

    from mtu_toolkit.datasets import VideoDeblurDataset
    from mtu_toolkit.datasets.lmdb_writer import convert_dataset
    from mtu_toolkit.datasets.synthetic import make_synthetic_dataset, skimage_photos
    from mtu_toolkit.engine.checkpoint import load_from_local_weights_only
    from mtu_toolkit.engine.hooks.visualization_hook import make_strip, panel_row
    from mtu_toolkit.evaluation import alignment_scores, psnr, ssim
    from mtu_toolkit.fileio import check_writable_folder, opencv_path
    from mtu_toolkit.models import count_parameters
    from mtu_toolkit.models.window import targets_of
    from mtu_toolkit.registry import MODELS

#: photographs for training and held-out ones for testing (see README for sources/licences)
SPLITS = dict(train=['astronaut', 'rocket', 'hubble_deep_field', 'coffee'], test=['chelsea'])
#: the virtual camera: a steady horizontal pan of 0.7 px per sub-frame (direction drawn per
#: sequence, turning back at the photo's edges) with a little shake, each frame exposed for 13
#: sub-frames (~9 px of motion blur), filmed at one of three frame rates drawn per sequence
#: (17, 28 or 39 sub-frames per frame interval: ~12, ~20 or ~27 px between frames). The varying
#: motion between frames is what makes the demo a test of motion compensation: without it, a
#: network can learn one fixed offset to the previous frame instead of matching. How much blur
#: there is decides whether matching pays (the figures of the alternatives tried: README).
RENDER = dict(sub_frames=(17, 28, 39), exposures=(13,), pan=0.7, speed=0.2, vertical=0.3)
#: frames per sequence and their (height, width)
FRAMES, SIZE = 24, (144, 192)
#: linear warm-up of the learning rate (iterations; at most a quarter of a shorter run)
WARMUP_ITERS = 150
MODELS_TO_TRAIN = [('mtu2_no_mc', 'configs/demo/mtu2_synthetic_no_mc.py'),
                   ('mtu2_mc', 'configs/demo/mtu2_synthetic.py')]


def step(msg):
    print(f'\n==> {msg}', flush=True)


def recipe_fingerprint(iters):
    """What the data and checkpoints depend on: the renderer settings, the configs and the
    number of iterations (the learning-rate schedule ends with them)."""
    texts = []
    for config in (path for _, path in MODELS_TO_TRAIN):
        with open(osp.join(ROOT, config)) as f:
            texts.append(f.read())
    return dict(render=repr(sorted(RENDER.items())), splits=SPLITS, warmup=WARMUP_ITERS,
                iterations=iters, configs=texts)


def demo_paths(out):
    """What the demo makes in ``out`` that a changed recipe makes stale (its outputs are
    replaced by the next run anyway)."""
    names = [name for name, _ in MODELS_TO_TRAIN]
    return ([osp.join(out, 'data', 'synthetic'), osp.join(out, 'data', 'synthetic_lmdb')]
            + [osp.join(out, 'work_dirs', name) for name in names]
            + [osp.join(out, f'train_{name}.log') for name in names])


def start_over_if_recipe_changed(out, iters):
    """Reuse data and checkpoints only when ``recipe.json`` says this recipe made them; when
    it says another did, remove what the demo made (nothing else). A non-empty folder without
    ``recipe.json`` is not the demo's: refused, nothing touched."""
    path, current = osp.join(out, 'recipe.json'), recipe_fingerprint(iters)
    if osp.isfile(path):
        with open(path) as f:
            if json.load(f) == current:
                return
        step(f'the demo recipe changed since {out} was made: starting over')
        for made in demo_paths(out):
            if osp.isdir(made) and not osp.islink(made):
                shutil.rmtree(made)
            elif osp.lexists(made):
                os.remove(made)
        for folder in ('data', 'work_dirs'):  # (left when nothing else is in them)
            if osp.isdir(osp.join(out, folder)) and not os.listdir(osp.join(out, folder)):
                os.rmdir(osp.join(out, folder))
    elif os.listdir(out):
        sys.exit(f'error: {out} is not empty and holds no recipe.json, so the demo did not '
                 'make it: give a new or empty --out-dir (delete that folder first if an older '
                 'demo made it)')
    with open(path + '.tmp', 'w') as f:
        json.dump(current, f)
    os.replace(path + '.tmp', path)


def make_data(out):
    src, lmdb_root = osp.join(out, 'data', 'synthetic'), osp.join(out, 'data', 'synthetic_lmdb')
    if not osp.isdir(src):
        step('rendering synthetic blur from real photographs (scikit-image data)')
        photos = skimage_photos()
        splits = {split: [(f'{name}_{k}', photos[name]) for name in names for k in range(3)]
                  for split, names in SPLITS.items()}
        make_synthetic_dataset(src, splits, num_frames=FRAMES, size=SIZE, seed=0, **RENDER)
    else:
        step(f'reusing {src}')
    if not osp.isfile(osp.join(lmdb_root, 'test', 'flow.lmdb', 'meta_info.txt')):
        step('converting to LMDB (+ DIS flow of the sharp frames)')
        convert_dataset(src, lmdb_root, 'dvd', ['train', 'test'], with_flow=True)
        print()
    else:
        step(f'reusing {lmdb_root}')
    return lmdb_root


def train_cmd(name, config, lmdb_root, out, iters):
    """tools/train.py for one model (resumes from its newest checkpoint when interrupted)."""
    roots = [f'{k}.dataset.data_root={lmdb_root}'
             for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    warmup = min(WARMUP_ITERS, max(1, iters // 4))
    return [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config,
            '--work-dir', osp.join(out, 'work_dirs', name), '--resume', '--cfg-options',
            f'train_cfg.max_iters={iters}', f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}', f'param_scheduler.1.end={iters}',
            f'train_cfg.val_interval={iters + 1}'] + roots


class Progress:
    """Collects the progress lines (``\r``-separated) a training writes to its stderr."""

    def __init__(self, proc, log_path):
        self.last = 'starting'
        self._thread = threading.Thread(target=self._read, args=(proc.stderr, log_path),
                                        daemon=True)
        self._thread.start()

    def _read(self, stream, log_path):
        # os.read returns what is there: the bar's updates end in '\r', not in a newline
        with open(log_path, 'ab') as log:
            for chunk in iter(lambda: os.read(stream.fileno(), 4096), b''):
                log.write(chunk)
                log.flush()
                text = chunk.decode(errors='replace').replace('\n', '\r')
                parts = [p for p in text.split('\r') if p.strip()]
                if parts and parts[-1].lstrip().startswith('['):
                    self.last = parts[-1].strip()

    def join(self):
        self._thread.join()


def train_all(models, lmdb_root, out, iters):
    """Train the models side by side, one core each (2-core machines: ~20% less wall time
    than one after the other with two threads each); returns {name: (config, checkpoint)}."""
    done, running = {}, {}
    for name, config in models:
        final = osp.join(out, 'work_dirs', name, f'iter_{iters}.pth')
        if osp.isfile(final):
            step(f'reusing {final}')
            done[name] = (config, final)
            continue
        step(f'training {name} ({iters} iterations; {config}; log {out}/train_{name}.log)')
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // len(models))))
        log = open(osp.join(out, f'train_{name}.log'), 'a')
        proc = subprocess.Popen(train_cmd(name, config, lmdb_root, out, iters), cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.PIPE)
        running[name] = (config, final, proc, log, Progress(proc, log.name))
    while any(r[2].poll() is None for r in running.values()):
        line = '  |  '.join(f'{n}: {r[4].last}' for n, r in running.items())
        sys.stderr.write('\r' + line[:240])
        sys.stderr.flush()
        time.sleep(1)
    if running:
        sys.stderr.write('\n')
    failed = []
    for name, (config, final, proc, log, progress) in running.items():
        progress.join()
        log.close()
        if proc.returncode != 0 or not osp.isfile(final):
            failed.append(f'{name} (exit {proc.returncode}; see {log.name})')
        done[name] = (config, final)
    if failed:
        sys.exit('training failed: ' + ', '.join(failed) + '. Re-run to resume.')
    return done


def load_model(config, ckpt):
    cfg = Config.fromfile(osp.join(ROOT, config))
    model = MODELS.build(cfg.model)
    model.load_state_dict(load_from_local_weights_only(ckpt, 'cpu')['state_dict'])
    return model.eval()


def evaluate(models, lmdb_root, mc_model):
    """{seq: {method: (psnr, ssim)}}, the restored clips of every method, and the inter-frame
    alignment of ``mc_model``'s motion compensation: {seq: {'MC': [(psnr, ssim)...],
    'no alignment': [...]}} (the paper's Sec. 4.2 measure, MCAlignmentMetric)."""
    test = VideoDeblurDataset(lmdb_root, split='test', backend='lmdb')
    table, clips, alignment = {}, {}, {}
    for i in range(len(test)):
        sample = test[i]
        seq = sample['data_samples']['key']
        blurry = targets_of(sample['inputs'][None])[0].float() / 255
        gt = sample['data_samples']['gt'].float() / 255
        outs = {'blurry input': blurry}
        with torch.no_grad():
            for name, model in models.items():
                outs[name] = model.infer_clip(blurry)
            _, motions = models[mc_model].restore_clip(sample['inputs'][None].float() / 255,
                                                       return_motion=True)
        flow, grid = torch.cat([m[0] for m in motions]), motions[0][1]
        alignment[seq] = {'MC': alignment_scores(gt, flow, grid),
                          'no alignment': alignment_scores(gt, torch.zeros_like(flow), grid)}
        table[seq] = {m: (float(psnr(o, gt).mean()), float(ssim(o, gt).mean()))
                      for m, o in outs.items()}
        clips[seq] = dict(outs, sharp=gt)
    return table, clips, alignment


def write_video(path, blurry, restored, fps=24):
    """blurry | restored side by side as an mp4, written to a temporary name and renamed."""
    tmp = path + '.tmp.mp4'
    h, w = blurry.shape[-2:]
    writer = cv2.VideoWriter(opencv_path(tmp), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                             (2 * w + 4, h))
    for b, r in zip(blurry, restored):
        writer.write(np.ascontiguousarray(make_strip(b, r)[..., ::-1]))
    writer.release()
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default=osp.join(ROOT, 'outputs', 'demo'),
                        help='folder of the data, trainings and results (default: '
                        'outputs/demo of the checkout); a re-run in it reuses every '
                        'finished step')
    parser.add_argument('--iters', type=int, default=700, help='training iterations per model')
    args = parser.parse_args(argv)
    out = osp.abspath(args.out_dir)
    if osp.exists(out) and not osp.isdir(out):
        sys.exit(f'error: --out-dir {out}: is a file; give a folder')
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        sys.exit(f'error: --out-dir {out}: cannot make the folder ({err.strerror})')
    try:
        check_writable_folder(f'--out-dir {out}', out)
    except ValueError as err:
        sys.exit(f'error: {err}')
    start = time.time()
    torch.set_num_threads(os.cpu_count() or 1)

    start_over_if_recipe_changed(out, args.iters)
    lmdb_root = make_data(out)
    trained = train_all(MODELS_TO_TRAIN, lmdb_root, out, args.iters)
    step('evaluating on the held-out sequences')
    models = {'MTU2 without MC': load_model(*trained['mtu2_no_mc']),
              'MTU2 (ours, with MC)': load_model(*trained['mtu2_mc'])}
    table, clips, alignment = evaluate(models, lmdb_root, 'MTU2 (ours, with MC)')

    methods = list(next(iter(table.values())))
    overall = {m: tuple(float(np.mean([table[s][m][k] for s in table])) for k in (0, 1))
               for m in methods}
    header = f'{"sequence":<14}' + ''.join(f'{m:>26}' for m in methods)
    lines = [header, '-' * len(header)]
    for seq in table:
        lines.append(f'{seq:<14}' + ''.join(f'{table[seq][m][0]:>17.2f} / {table[seq][m][1]:.3f}'
                                            for m in methods))
    lines.append(f'{"mean":<14}' + ''.join(f'{overall[m][0]:>17.2f} / {overall[m][1]:.3f}'
                                           for m in methods))
    gap_input = overall['MTU2 (ours, with MC)'][0] - overall['blurry input'][0]
    gap_mc = overall['MTU2 (ours, with MC)'][0] - overall['MTU2 without MC'][0]
    align = {k: float(np.mean([p for seq in alignment for p, _ in alignment[seq][k].values()]))
             for k in ('MC', 'no alignment')}
    gap_align = align['MC'] - align['no alignment']
    summary = (f'MTU2 vs blurry input: {gap_input:+.2f} dB\n'
               f'MC vs no MC (deblurring): {gap_mc:+.2f} dB\n'
               f'MC alignment vs no alignment (GT t-1 warped by MTU2\'s matching to GT t, 1/4 '
               f'resolution): {gap_align:+.2f} dB ({align["MC"]:.2f} vs '
               f'{align["no alignment"]:.2f} dB)\n')
    print('\nPSNR (dB) / SSIM on held-out sequences:\n' + '\n'.join(lines))
    print('\n' + summary)

    # outputs
    comp = osp.join(out, 'comparisons')
    os.makedirs(comp, exist_ok=True)
    for seq, c in clips.items():
        t = len(c['sharp']) // 2
        row = panel_row([c[methods[0]][t], c[methods[1]][t], c[methods[2]][t], c['sharp'][t]],
                        labels=['blurry', 'no MC', 'MTU2', 'sharp'])
        cv2.imwrite(opencv_path(osp.join(comp, f'{seq}.png')), row[..., ::-1])
    seq = next(iter(clips))
    video = osp.join(out, f'deblurred_{seq}.mp4')
    write_video(video, clips[seq]['blurry input'], clips[seq]['MTU2 (ours, with MC)'])
    ckpt = osp.join(out, 'mtu2_demo.pth')
    shutil.copyfile(trained['mtu2_mc'][1], ckpt + '.tmp')
    os.replace(ckpt + '.tmp', ckpt)
    params = count_parameters(models['MTU2 (ours, with MC)'])[0]
    result = dict(per_sequence={s: {m: dict(psnr=v[0], ssim=v[1]) for m, v in r.items()}
                                for s, r in table.items()},
                  overall={m: dict(psnr=v[0], ssim=v[1]) for m, v in overall.items()},
                  gap_vs_input_db=gap_input, gap_mc_vs_no_mc_db=gap_mc,
                  alignment_psnr_db=align, gap_alignment_db=gap_align, params=params,
                  iterations=args.iters, wall_time_s=time.time() - start)
    with open(osp.join(out, 'metrics.json.tmp'), 'w') as f:
        json.dump(result, f, indent=2)
    os.replace(osp.join(out, 'metrics.json.tmp'), osp.join(out, 'metrics.json'))
    with open(osp.join(out, 'metrics.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n\n' + summary)
    print(f'\nwrote to {out}:\n  metrics.json, metrics.txt\n  comparisons/ (blurry | no MC | '
          f'MTU2 | sharp, middle frame of each held-out sequence)\n  {osp.basename(video)} '
          f'(blurry | MTU2)\n  mtu2_demo.pth (checkpoint; configs/demo/mtu2_synthetic.py)')
    print(f'total time {(time.time() - start) / 60:.1f} min')


if __name__ == '__main__':
    main()
