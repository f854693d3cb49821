"""Test a video deblurring model: per-sequence and overall PSNR / SSIM.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out-dir DIR]
                                           [--protocol {toolkit,reference,matlab}] [--align]
                                           [--cfg-options k=v ...] [--launcher pytorch]

Prints a table (sequence, frames, PSNR, SSIM, then the average over all frames) headed by the
evaluation protocol that produced it, and writes it to ``<work_dir>/test_results.json`` (with
the protocol and per-frame values) and ``test_results.csv`` (protocol and alignment columns).
``--protocol`` picks how frames are scored (default: the config's, ``toolkit`` unless set):
``reference`` is the reference implementation's eval.py, ``matlab`` its MATLAB evaluation (the
paper's tables, with ``--align``); see docs/evaluation.md. The JSON names the checkpoint and
config; each run's tables are also kept in its log folder (``<work_dir>/<timestamp>/``), so a
later test of another checkpoint in the same work dir loses no earlier result.

``--out-dir`` saves the restored frames as ``<out-dir>/<sequence>/<frame:05d>.png``, written
into a temporary folder that becomes ``--out-dir`` when the test ends (an interrupted test
leaves none); a folder that holds files is replaced only with ``--overwrite``. Ctrl-C or SIGTERM
stops with one line. Half-precision inference (the paper's "hp" model) comes from the config:
``model.infer_dtype='float16'``.

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

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    from mmengine.dist import is_main_process
    from mmengine.runner import Runner

    from mtu_toolkit.engine import finish_distributed, prepare_runtime
    from mtu_toolkit.engine.config_loader import (
        ConfigError, interrupted, interruption_of, run_tool, terminate_like_interrupt)
    from mtu_toolkit.engine.launch import add_runner_arguments, runner_config
    from mtu_toolkit.engine.checkpoint import (
        CheckpointLoadError, atomic_write_text, check_checkpoint_file)
    from mtu_toolkit.engine.hooks import SaveRestoredFramesHook, add_strict_loading
    from mtu_toolkit.engine.hooks.restored_frames_hook import check_frames_folder
    from mtu_toolkit.evaluation import (
        PROTOCOLS, MCAlignmentMetric, VideoRestorationMetric, apply_protocol)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a video deblurring model')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs and result tables go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--out-dir', help='save restored frames as PNG under this folder')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an --out-dir that holds files')
    parser.add_argument('--protocol', choices=sorted(PROTOCOLS),
                        help="how frames are scored (default: the config's, 'toolkit' unless "
                        "set): 'reference' = the reference eval.py, 'matlab' = its MATLAB "
                        'evaluation (docs/evaluation.md)')
    parser.add_argument('--align', action='store_true', default=None,
                        help="Koehler et al.'s alignment (global translation + intensity scale) "
                        "before scoring, as the paper's tables")
    add_runner_arguments(parser, 'model.infer_dtype=float16')
    return parser.parse_args(argv)


def build_cfg(args):
    check_checkpoint_file(args.checkpoint)
    cfg = runner_config(args)
    cfg.load_from, cfg.resume = args.checkpoint, False
    for key in ('test_dataloader', 'test_evaluator', 'test_cfg'):
        if cfg.get(key) is None:
            raise ConfigError(f'{args.config}: `{key}` is not set, so there is nothing to test')
    # the protocol's crop before inference, whether the protocol comes from the command line
    # or from the config's evaluator (checked here: before any frame is restored)
    try:
        apply_protocol(cfg, args.protocol, args.align)
    except ValueError as err:
        raise ConfigError(f'{args.config}: {err}') from None
    add_alignment_metric(cfg)
    if args.out_dir:
        data = (cfg.test_dataloader.get('dataset') or {}).get('data_root')
        try:
            check_frames_folder(args.out_dir, args.overwrite,
                                [args.checkpoint, args.config, cfg.work_dir, data])
        except ValueError as err:
            raise ConfigError(f'--out-dir {err}') from None
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='SaveRestoredFramesHook', out_dir=args.out_dir, overwrite=args.overwrite)]
    add_strict_loading(cfg)
    return prepare_runtime(cfg, args.launcher)


def add_alignment_metric(cfg):
    """Score the motion compensation's alignment too (MCAlignmentMetric), unless the config's
    evaluator already does."""
    evaluator = cfg.test_evaluator
    metrics = evaluator.get('metrics', evaluator) if isinstance(evaluator, dict) else evaluator
    metrics = list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]
    if not any(m.get('type') in ('MCAlignmentMetric', 'mtu.MCAlignmentMetric') for m in metrics):
        metrics.append(dict(type='MCAlignmentMetric'))
    cfg.test_evaluator = metrics


def alignment_line(metric, head):
    """The alignment accuracy's line of the report."""
    if not metric.applicable:
        return (f'MC alignment: not applicable ({head} gives no displacement to warp with)')
    what = 'no alignment' if head == 'NoneMCHead' else f'{head}'
    return (f"MC alignment ({what}; GT t-1 warped to GT t, 1/4 resolution, "
            f"{metric.overall['frames']} frames): PSNR {metric.overall['PSNR']:.4f}  "
            f"SSIM {metric.overall['SSIM']:.5f}")


def format_table(sequences, overall, protocol=None):
    """Plain-text table of the per-sequence rows and the overall (all-frames) row, headed by
    the metric's ``protocol_info`` when given."""
    width = max([len('sequence'), len('overall')] + [len(r['sequence']) for r in sequences])
    line = f"{'sequence':<{width}}  {'frames':>6}  {'PSNR':>8}  {'SSIM':>7}"
    rows = [line, '-' * len(line)]
    if protocol:
        rows.insert(0, f"protocol: {protocol['protocol']}{' + align' if protocol['align'] else ''}"
                       f" ({protocol['description']})")
    for r in sequences + [None, overall]:
        if r is None:
            rows.append('-' * len(line))
            continue
        rows.append(f"{r['sequence']:<{width}}  {r['frames']:>6d}  {r['PSNR']:>8.4f}  "
                    f"{r['SSIM']:>7.5f}")
    return '\n'.join(rows)


def write_tables(work_dir, metric, alignment=None, head=None, tested=None):
    """``test_results.json`` (what was tested, protocol, overall, sequences, frames, the MC
    alignment) and ``test_results.csv`` (sequences and overall, each row naming the protocol and
    alignment) from an evaluated :class:`VideoRestorationMetric` (and
    :class:`MCAlignmentMetric`); ``tested``: ``{'checkpoint': ..., 'config': ...}``."""
    os.makedirs(work_dir, exist_ok=True)
    overall, info = metric.overall, metric.protocol_info
    report = dict(tested or {}, protocol=info, overall=overall, sequences=metric.sequence_table,
                  frames=metric.frame_table)
    if alignment is not None:
        report['mc_alignment'] = dict(
            mc_head=head, applicable=bool(alignment.applicable), overall=alignment.overall,
            sequences=alignment.sequence_table,
            definition='PSNR/SSIM of GT t-1 warped by the last matching MC module\'s '
                       'displacement against GT t, both area-downsampled by 4, masked to the '
                       'warped pixels; frames 1..N-1')
    atomic_write_text(osp.join(work_dir, 'test_results.json'), json.dumps(report, indent=2))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=['sequence', 'frames', 'PSNR', 'SSIM', 'protocol',
                                             'align'])
    writer.writeheader()
    label = dict(protocol=info['protocol'], align=info['align'])
    writer.writerows([dict(r, **label) for r in metric.sequence_table + [overall]])
    atomic_write_text(osp.join(work_dir, 'test_results.csv'), buf.getvalue())


def main(argv=None):
    args = parse_args(argv)
    runner = Runner.from_cfg(build_cfg(args))
    terminate_like_interrupt()
    try:
        metrics = runner.test()
    except (KeyboardInterrupt, Exception) as err:
        for hook in runner.hooks:  # the frames written so far: not left as a result
            if isinstance(hook, SaveRestoredFramesHook):
                hook.abort()
        if isinstance(err, CheckpointLoadError):
            print(f'error: {err}', file=sys.stderr)
            return 4
        stop = interruption_of(err)
        if stop is None:
            raise
        placed = [h.out_dir for h in runner.hooks
                  if isinstance(h, SaveRestoredFramesHook) and h.placed]
        return interrupted(stop, f'the frames are in {placed[0]}, no results written' if placed
                           else 'no results or frames written')
    main_process = is_main_process()
    finish_distributed(runner)
    if not main_process:
        return
    found = [m for m in runner.test_evaluator.metrics if isinstance(m, VideoRestorationMetric)]
    if not found:
        print(metrics)
        return
    metric = found[0]
    print(format_table(metric.sequence_table, metric.overall, metric.protocol_info), flush=True)
    alignment = next((m for m in runner.test_evaluator.metrics
                      if isinstance(m, MCAlignmentMetric)), None)
    model = getattr(runner.model, 'module', runner.model)  # DDP wraps it
    head = type(model.backbone.mc_head).__name__ \
        if hasattr(getattr(model, 'backbone', None), 'mc_head') else None
    if alignment is not None:
        print(alignment_line(alignment, head), flush=True)
    tested = dict(checkpoint=osp.abspath(args.checkpoint), config=osp.abspath(args.config))
    for folder in (runner.log_dir, runner.work_dir):  # this run's, and the latest
        write_tables(folder, metric, alignment, head, tested)
    print(f'results written to {osp.join(runner.work_dir, "test_results.{json,csv}")} (and '
          f'{runner.log_dir})')


if __name__ == '__main__':
    sys.exit(run_tool(main))
