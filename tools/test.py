"""Test a video deblurring model: per-sequence and overall PSNR / SSIM.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out-dir DIR]
                                           [--cfg-options k=v ...] [--launcher pytorch]

Prints a table (sequence, frames, PSNR, SSIM, then the average over all frames) and writes it to
``<work_dir>/test_results.json`` (with per-frame values) and ``test_results.csv``. ``--out-dir``
saves the restored frames as ``<out-dir>/<sequence>/<frame:05d>.png``. Half-precision inference
(the paper's "hp" model) comes from the config: ``model.infer_dtype='float16'``.

CHECKPOINT may also be a released file of the paper's authors (``MTU2_DVD.pytorch``): it is
converted on loading (one line says so). Checkpoints are loaded strictly: one of another variant
than the config stops the test with one line naming both and what differs (exit code 4).
"""
import argparse
import csv
import io
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dist import is_main_process  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mtu_toolkit.engine import finish_distributed, prepare_runtime  # noqa: E402
from mtu_toolkit.engine.checkpoint import CheckpointLoadError, atomic_write_text  # noqa: E402
from mtu_toolkit.engine.hooks import add_strict_loading  # noqa: E402
from mtu_toolkit.evaluation import VideoRestorationMetric  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a video deblurring model')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs and result tables go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--out-dir', help='save restored frames as PNG under this folder')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. model.infer_dtype=float16')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher (pytorch = torchrun)')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_cfg(args):
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from, cfg.resume = args.checkpoint, False
    for key in ('test_dataloader', 'test_evaluator', 'test_cfg'):
        if cfg.get(key) is None:
            raise KeyError(f'{args.config}: `{key}` is not set, so there is nothing to test')
    if args.out_dir:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='SaveRestoredFramesHook', out_dir=args.out_dir)]
    add_strict_loading(cfg)
    return prepare_runtime(cfg, args.launcher)


def format_table(sequences, overall):
    """Plain-text table of the per-sequence rows and the overall (all-frames) row."""
    width = max([len('sequence'), len('overall')] + [len(r['sequence']) for r in sequences])
    line = f"{'sequence':<{width}}  {'frames':>6}  {'PSNR':>8}  {'SSIM':>7}"
    rows = [line, '-' * len(line)]
    for r in sequences + [None, overall]:
        if r is None:
            rows.append('-' * len(line))
            continue
        rows.append(f"{r['sequence']:<{width}}  {r['frames']:>6d}  {r['PSNR']:>8.4f}  "
                    f"{r['SSIM']:>7.5f}")
    return '\n'.join(rows)


def write_tables(work_dir, metric):
    """``test_results.json`` (overall, sequences, frames) and ``test_results.csv`` (sequences
    and overall) from an evaluated :class:`VideoRestorationMetric`."""
    os.makedirs(work_dir, exist_ok=True)
    overall = metric.overall
    report = dict(overall=overall, sequences=metric.sequence_table, frames=metric.frame_table)
    atomic_write_text(osp.join(work_dir, 'test_results.json'), json.dumps(report, indent=2))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=['sequence', 'frames', 'PSNR', 'SSIM'])
    writer.writeheader()
    writer.writerows(metric.sequence_table + [overall])
    atomic_write_text(osp.join(work_dir, 'test_results.csv'), buf.getvalue())


def main(argv=None):
    args = parse_args(argv)
    runner = Runner.from_cfg(build_cfg(args))
    try:
        metrics = runner.test()
    except CheckpointLoadError as err:
        print(f'error: {err}', file=sys.stderr)
        return 4
    main_process = is_main_process()
    finish_distributed()
    if not main_process:
        return
    found = [m for m in runner.test_evaluator.metrics if isinstance(m, VideoRestorationMetric)]
    if not found:
        print(metrics)
        return
    metric = found[0]
    print(format_table(metric.sequence_table, metric.overall), flush=True)
    write_tables(runner.work_dir, metric)
    print(f'results written to {osp.join(runner.work_dir, "test_results.{json,csv}")}')


if __name__ == '__main__':
    sys.exit(main())
