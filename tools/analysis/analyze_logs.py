"""Training curves and training time from the scalar logs of runs, without TensorBoard.

    python tools/analysis/analyze_logs.py plot_curve RUN [RUN ...] --keys loss loss_motion
                                          [--legend NAME ...] [--smooth N] [--title T]
                                          [--out curves.png] [--overwrite]
    python tools/analysis/analyze_logs.py cal_train_time RUN [RUN ...]

A RUN is a ``scalars.json`` that mmengine's ``LocalVisBackend`` writes
(``WORK_DIR/<timestamp>/vis_data/scalars.json``: one JSON object per line, ``step`` and the
scalars), or a work dir: its runs' ``scalars.json`` files are read in timestamp order as one
run (a resumed training continues the previous file; a step logged twice keeps the later
value). Training lines are those with ``lr`` or ``loss``, the rest validation lines; a key is
taken from the training lines when they have it (``loss``, ``time``), else from the validation
lines (``PSNR``, ``SSIM``).

``plot_curve`` draws one panel per key, every run in each (e.g. the demo's MTU2 with and without
MC), and writes a PNG (or .pdf / .svg) atomically, replacing an existing file only with
``--overwrite`` (checked before the logs are read); it needs matplotlib (a dependency of
mmengine). ``cal_train_time`` prints the mean, slowest and fastest logged ``time`` per iteration.
A key that a run does not log (the no-MC model has no ``loss_motion``) is left out of that run
with a note; a key no run logs is an error.
"""
import argparse
import difflib
import glob
import json
import math
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # a checkout

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    from mtu_toolkit.engine.checkpoint import fsync_replace
    from mtu_toolkit.engine.config_loader import (
        ArgumentError, add_debug_argument, run_tool)
    from mtu_toolkit.fileio import check_output_file, temporary_path

#: keys of a log line that mark it as a training line
TRAIN_MARKS = ('lr', 'loss')


def scalar_files(path):
    """The ``scalars.json`` files of a RUN argument, oldest first."""
    if osp.isfile(path):
        return [path]
    if osp.isdir(path):
        found = sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
        found = found or sorted(glob.glob(osp.join(path, 'vis_data', 'scalars.json')))
        if not found:
            raise ArgumentError(f'{path}: no */vis_data/scalars.json in this folder (is it a '
                                'work dir of tools/train.py?)')
        return found
    raise ArgumentError(f'{path} does not exist')


def read_scalars(path):
    """``[dict]`` of the lines of one ``scalars.json``. A last line without its newline (a run
    still writing) is skipped; any other line that is not a JSON object with a numeric
    ``step`` is an error naming it."""
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ArgumentError(f'{path}: cannot be read ({err})') from None
    lines = text.split('\n')
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # no newline after it: cut off while being written
                print(f'note: {path}:{n}: incomplete last line skipped', file=sys.stderr)
                continue
            raise ArgumentError(f'{path}:{n}: not a JSON line of scalars: {line[:60]!r}') \
                from None
        if not isinstance(record, dict) or not isinstance(record.get('step'), (int, float)):
            raise ArgumentError(f'{path}:{n}: expected a JSON object with a numeric "step", got '
                                f'{line[:60]!r}')
        records.append(record)
    return records


def load_run(path):
    """``{'train': {step: record}, 'val': {step: record}}`` of a RUN (later files win)."""
    run = {'train': {}, 'val': {}}
    for file in scalar_files(path):
        for record in read_scalars(file):
            mode = 'train' if any(k in record for k in TRAIN_MARKS) else 'val'
            run[mode][record['step']] = record
    if not run['train'] and not run['val']:
        raise ArgumentError(f'{path}: no scalars logged')
    return run


def series(run, key):
    """``(steps, values)`` of ``key`` in a run (training lines first), or None when absent."""
    for mode in ('train', 'val'):
        points = sorted((step, rec[key]) for step, rec in run[mode].items()
                        if isinstance(rec.get(key), (int, float)))
        if points:
            return [p[0] for p in points], [float(p[1]) for p in points]
    return None


def run_keys(run):
    return sorted({k for mode in run.values() for rec in mode.values() for k in rec} - {'step'})


def smooth(values, window):
    """Trailing moving average over ``window`` points (the first points over fewer)."""
    out, total = [], 0.
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def run_name(path):
    """A short name for a RUN: its work dir's name."""
    path = osp.abspath(path)
    if osp.basename(path) == 'scalars.json':  # WORK_DIR/<timestamp>/vis_data/scalars.json
        path = osp.dirname(osp.dirname(osp.dirname(path)))
    return osp.basename(path.rstrip(os.sep)) or path


def labels(paths, keys, legend):
    """``{(run index, key): label}``: ``--legend`` gives a name per run, or a label per run and
    key (run-major, as mmdet's); by default the work dirs' names (made unique)."""
    if legend is None:
        names = [run_name(p) for p in paths]
        if len(set(names)) < len(names):
            names = [osp.abspath(p) for p in paths]
        legend = names
    if len(legend) == len(paths):
        return {(i, k): legend[i] for i in range(len(paths)) for k in keys}
    if len(legend) == len(paths) * len(keys):
        return {(i, k): legend[i * len(keys) + j] for i in range(len(paths))
                for j, k in enumerate(keys)}
    raise ArgumentError(f'--legend has {len(legend)} names; give one per run ({len(paths)}) or '
                        f'one per run and key ({len(paths) * len(keys)})')


def gather(paths, keys):
    """``(runs, {(run index, key): (steps, values)})``; notes for keys a run lacks, an error for
    a key that no run logs."""
    runs = [load_run(p) for p in paths]
    curves = {}
    for key in keys:
        found = {i: series(run, key) for i, run in enumerate(runs)}
        if all(s is None for s in found.values()):
            known = sorted({k for run in runs for k in run_keys(run)})
            close = difflib.get_close_matches(key, known, n=3)
            hint = f'; did you mean {" or ".join(close)}?' if close else ''
            raise ArgumentError(f'--keys {key}: no run logs it{hint} (logged: '
                                f'{", ".join(known)})')
        for i, s in found.items():
            if s is None:
                print(f'note: {paths[i]} has no {key!r}; left out of that run',
                      file=sys.stderr)
            else:
                curves[(i, key)] = s
    return runs, curves


def _check_out(out, paths, overwrite):
    """The picture format of ``--out``; a clear error for an input, a folder, an existing file
    (without ``overwrite``) or an unknown format."""
    import matplotlib.figure
    inputs = [f for p in paths for f in scalar_files(p)]
    try:
        check_output_file(out, inputs, overwrite)
    except ValueError as err:
        raise ArgumentError(f'--out {err}') from None
    ext = osp.splitext(out)[1].lower().lstrip('.')
    formats = matplotlib.figure.Figure().canvas.get_supported_filetypes()
    if ext not in formats:
        raise ArgumentError(f'--out {out}: unknown picture format {ext!r} (use one of '
                            f'{", ".join(sorted(formats))})')
    return ext


def plot_curve(args):
    try:
        import matplotlib
    except ImportError:
        raise ArgumentError('plot_curve needs matplotlib: pip install matplotlib') from None
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    ext = _check_out(args.out, args.runs, args.overwrite)
    _, curves = gather(args.runs, args.keys)
    names = labels(args.runs, args.keys, args.legend)
    fig, axes = plt.subplots(len(args.keys), 1, sharex=True, squeeze=False,
                             figsize=(7, 2.6 * len(args.keys) + 0.6))
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, key in zip(axes[:, 0], args.keys):
        for i in range(len(args.runs)):
            if (i, key) not in curves:
                continue
            steps, values = curves[(i, key)]
            few = len(steps) <= 50  # e.g. validation scores: dots show where they were taken
            ax.plot(steps, smooth(values, args.smooth), color=colors[i % len(colors)],
                    label=names[(i, key)], linewidth=1.2, marker='o' if few else None,
                    markersize=3)
        ax.set_ylabel(key)
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel('iteration')
    title = args.title or (f'smoothed over {args.smooth} points' if args.smooth > 1 else None)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = temporary_path(args.out)
    try:
        fig.savefig(tmp, format=ext, dpi=args.dpi)
        fsync_replace(tmp, args.out)
    finally:
        plt.close(fig)
        if osp.exists(tmp):
            os.remove(tmp)
    print(f'{args.out}: {len(curves)} curves ({", ".join(args.keys)}) of {len(args.runs)} runs')


def train_time(run):
    """Mean / slowest / fastest logged seconds per iteration and the last step, or None."""
    s = series({'train': run['train'], 'val': {}}, 'time')
    if s is None:
        return None
    steps, times = s
    mean = sum(times) / len(times)
    std = math.sqrt(sum((t - mean) ** 2 for t in times) / len(times))
    return dict(mean=mean, std=std, slowest=(steps[times.index(max(times))], max(times)),
                fastest=(steps[times.index(min(times))], min(times)), last_step=steps[-1])


def cal_train_time(args):
    for path in args.runs:
        t = train_time(load_run(path))
        if t is None:
            raise ArgumentError(f'{path}: no training lines with "time"')
        print(f'-----Analyze train time of {path}-----')
        print(f'average time per iteration: {t["mean"]:.4f} s (std {t["std"]:.4f})')
        print(f'slowest logged: step {t["slowest"][0]}, {t["slowest"][1]:.4f} s')
        print(f'fastest logged: step {t["fastest"][0]}, {t["fastest"][1]:.4f} s')
        total = t['mean'] * t['last_step']
        span = f'{total / 3600:.2f} h' if total >= 3600 else f'{total / 60:.1f} min'
        print(f'{t["last_step"]} iterations at the average: {span}')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Analyze the scalar logs of trainings')
    sub = parser.add_subparsers(dest='task', required=True)
    plot = sub.add_parser('plot_curve', help='training curves of one or more runs as a PNG')
    plot.add_argument('runs', nargs='+', metavar='RUN',
                      help='scalars.json (WORK_DIR/<timestamp>/vis_data/) or a work dir')
    plot.add_argument('--keys', nargs='+', default=['loss'], help='scalars to plot (default: '
                      'loss), e.g. loss loss_motion PSNR')
    plot.add_argument('--legend', nargs='+', help='a name per run (or per run and key)')
    plot.add_argument('--smooth', type=int, default=1,
                      help='moving average over N logged points (default 1: none)')
    plot.add_argument('--title', help='figure title')
    plot.add_argument('--dpi', type=int, default=120)
    plot.add_argument('--out', default='curves.png', help='picture file (default curves.png; '
                      '.png, .pdf, .svg, ...)')
    plot.add_argument('--overwrite', action='store_true',
                      help='let --out replace an existing file (never a log)')
    add_debug_argument(plot)
    timing = sub.add_parser('cal_train_time', help='seconds per iteration of runs')
    timing.add_argument('runs', nargs='+', metavar='RUN', help='scalars.json or a work dir')
    add_debug_argument(timing)
    args = parser.parse_args(argv)
    if args.task == 'plot_curve' and (args.smooth < 1 or args.dpi < 1):
        plot.error('--smooth and --dpi must be >= 1')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.task == 'plot_curve':
        plot_curve(args)
    else:
        cal_train_time(args)
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
