"""Print a config as the Runner of ``tools/train.py`` sees it: merged, options applied.

    python tools/misc/print_config.py CONFIG [--cfg-options KEY=VALUE ...] [--work-dir DIR]
                                             [--amp] [--out merged.py]

The config goes through the same code as ``tools/train.py`` (its ``build_cfg``): ``_base_``
inheritance, the checked ``--cfg-options`` (a misspelt key is an error naming close matches; a
leading ``+`` adds a new key), the default ``work_dir``, ``--amp``'s optimiser wrapper and the
runtime additions (launcher, TensorBoard backend when installed). ``--out`` also writes it as a
config file (atomically; never over the input).
"""
import argparse
import contextlib
import importlib.util
import os.path as osp
import sys

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(TOOLS))  # run from a checkout

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    from mtu_toolkit.engine.checkpoint import atomic_write_text
    from mtu_toolkit.engine.config_loader import (
        ConfigError, add_cfg_options_argument, add_debug_argument, run_tool)
    from mtu_toolkit.fileio import check_output_file


def load_train_tool():
    """``tools/train.py`` as a module (its ``parse_args`` and ``build_cfg``)."""
    spec = importlib.util.spec_from_file_location('_mtu_tools_train', osp.join(TOOLS, 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_config(config, cfg_options=None, work_dir=None, amp=False):
    """The Config ``tools/train.py CONFIG`` would hand to the Runner (without resuming)."""
    train = load_train_tool()
    args = train.parse_args([config])  # train.py's defaults for everything not given here
    args.cfg_options, args.work_dir, args.amp = dict(cfg_options or {}), work_dir, amp
    return train.build_cfg(args)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Print a config as tools/train.py gives it to the Runner')
    parser.add_argument('config', help='config file')
    add_cfg_options_argument(parser, 'train_cfg.max_iters=10')
    parser.add_argument('--work-dir', help='as tools/train.py --work-dir')
    parser.add_argument('--amp', action='store_true', help='as tools/train.py --amp')
    parser.add_argument('--out', help='also write the merged config to this .py file')
    parser.add_argument('--overwrite', action='store_true',
                        help='let --out replace an existing file (never the input config)')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.out:  # checked before any work (an existing file, e.g. a _base_ piece, only
        # with --overwrite)
        if not args.out.endswith('.py'):
            raise ConfigError(f'--out {args.out}: a config file must end with .py')
        try:
            check_output_file(args.out, [args.config], args.overwrite)
        except ValueError as err:
            raise ConfigError(f'--out {err}') from None
    with contextlib.redirect_stdout(sys.stderr):  # train.py's notes; stdout is the config
        cfg = training_config(args.config, args.cfg_options, args.work_dir, args.amp)
    text = cfg.pretty_text
    print(text)
    if args.out:
        atomic_write_text(args.out, text + '\n')
        print(f'written to {args.out}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
