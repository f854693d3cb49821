"""Train a video deblurring model with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--cfg-options k=v ...] [--launcher pytorch]

``--resume`` alone continues from the latest checkpoint of the work dir (and starts afresh when
there is none); ``--resume CKPT`` from that file. Distributed: ``tools/dist_train.sh`` (torchrun;
gloo on CPU) or ``tools/slurm_train.sh``; the config's ``train_dataloader.batch_size`` is the
total batch, split evenly over the processes. ``--amp`` (and the "hp" configs): float16
autocast with loss scaling on a GPU, bfloat16 autocast on the CPU.

Ctrl-C or SIGTERM stops with one line naming the last complete checkpoint (``--resume``
continues from it); a checkpoint being written then is removed, never left half-written.

A run that fails before its first training iteration (an unknown component ``type``, a dataset
that cannot be read, Ctrl-C while building) removes what it created: the
``<work_dir>/<timestamp>`` log folder, its copy of the config and a work dir it made; nothing
else.

Checkpoints (``--resume``, ``load_from``) are loaded strictly: one of another variant than the
config stops with one line naming both and what differs (exit code 4). Settings the weights
cannot show (the MC head's type and search range, the residual, ...) are recorded in every
checkpoint and compared too: ``--resume`` refuses other ones; ``load_from`` fine-tunes under
the config's settings and logs one warning naming them. ``load_from`` may be a released file
of the paper's authors (converted on loading; fine-tuning from it).
"""
import argparse
import errno
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    from mtu_toolkit.engine import (
        finish_distributed, find_resume_checkpoint, prepare_runtime)
    from mtu_toolkit.engine.config_loader import (
        ConfigError, interrupted, interruption_of, run_tool, terminate_like_interrupt,
        user_error)
    from mtu_toolkit.engine.launch import (
        add_runner_arguments, check_training_settings, runner_config, split_total_batch,
        use_mixed_precision)
    from mtu_toolkit.engine.checkpoint import (
        CheckpointLoadError, check_checkpoint_file, resume_seed)
    from mtu_toolkit.engine.hooks import add_strict_loading
    from mtu_toolkit.engine.runner import TrainingRunner
    from mtu_toolkit.evaluation import apply_protocol


#: the errors of writing a checkpoint or log that are the work dir's disk's
WRITE_ERRORS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a video deblurring model')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume from CKPT, or without a value from the latest checkpoint '
                        'in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: float16 + loss scaling on GPU, bfloat16 on CPU')
    add_runner_arguments(parser, 'train_cfg.max_iters=10')
    return parser.parse_args(argv)


def build_cfg(args):
    cfg = runner_config(args)
    check_training_settings(cfg)
    if cfg.get('val_cfg') is not None and cfg.get('val_dataloader') is not None:
        try:  # the validation gets its protocol's crop before inference, as tools/test.py
            apply_protocol(cfg, stage='val')
        except ValueError as err:
            raise ConfigError(f'{args.config}: {err}') from None
    kinds = use_mixed_precision(cfg, force=args.amp)
    if 'BF16AutocastOptimWrapper' in kinds:
        print('mixed precision without a GPU: training under bfloat16 autocast on the CPU',
              file=sys.stderr, flush=True)
    split = split_total_batch(cfg, args.launcher)
    if split and split[2] > 1:
        print(f'total batch {split[0]} = {split[1]} per process x {split[2]} processes',
              file=sys.stderr, flush=True)
    if args.resume == 'auto':
        ckpt = find_resume_checkpoint(cfg.work_dir)
        if ckpt is None:
            start = (f'fine-tuning from load_from {cfg.load_from}' if cfg.get('load_from')
                     else 'starting from scratch')
            print(f'--resume: no checkpoint in {cfg.work_dir}, {start}', flush=True)
        else:
            cfg.resume, cfg.load_from = True, ckpt
    elif args.resume:
        check_checkpoint_file(args.resume, '--resume: checkpoint')
        cfg.resume, cfg.load_from = True, args.resume
    if cfg.get('resume'):
        saved, given = resume_seed(cfg, cfg.load_from)
        if saved is not None and given is not None and saved != given:
            print(f'--resume: the seed of {cfg.load_from} ({saved}) is used, not {given}: the '
                  'resumed run draws the clips the interrupted one would have', flush=True)
    add_strict_loading(cfg, other_settings='warn')  # (resume refuses them all the same)
    return prepare_runtime(cfg, args.launcher)


def main(argv=None):
    args = parse_args(argv)
    runner = TrainingRunner.from_cfg(build_cfg(args))
    terminate_like_interrupt()
    try:
        runner.train()
    except CheckpointLoadError as err:
        print(f'error: {err}', file=sys.stderr)
        return 4
    except (KeyboardInterrupt, Exception) as err:
        stop = interruption_of(err)
        disk = user_error(err) if isinstance(err, OSError) else None
        if stop is None and disk is None:
            raise
        last = find_resume_checkpoint(runner.work_dir)
        resume = (f'the last complete checkpoint is {last} (--resume continues from it)'
                  if last else 'no checkpoint was saved yet')
        if stop is None:  # a full disk while saving a checkpoint or a log, ...
            # (a full disk names no file; a missing dataset is not about the work dir)
            where = (f' (writing in {runner.work_dir})' if getattr(err, 'errno', None)
                     in WRITE_ERRORS else '')
            print(f'error: {disk[0]}{where}; {resume}', file=sys.stderr)
            return disk[1]
        return interrupted(stop, resume)
    finish_distributed(runner)
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
