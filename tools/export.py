"""Export a trained MTU model's single-frame step as TorchScript (and ONNX).

    python tools/export.py CONFIG CHECKPOINT OUTPUT.pt --size 1280x720 [--onnx OUTPUT.onnx]
                           [--no-check]

The exported step takes the 5-frame window and the recurrent state and returns the restored
frame and the new state (see ``mtu_toolkit/deploy/export.py``); ``first`` starts a video. Tracing
fixes the frame size. The TorchScript export is checked against the Python model on a random
clip (max abs difference printed) unless ``--no-check``. The outputs are checked before any
work: never the config or checkpoint, an existing file only with ``--overwrite``; each is
written through a temporary name, so it is whole or absent.

Exit codes: 0 done, 2 bad arguments or config, 4 a checkpoint that cannot be read or does not
fit the config, 5 an output that cannot be written (e.g. a full disk), 6 ONNX skipped (no
``onnx`` package).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    import torch

    from mtu_toolkit.apis import InferenceError, init_restorer
    from mtu_toolkit.deploy import export_onnx, export_torchscript, run_step_module
    from mtu_toolkit.deploy.export import check_export_paths, onnx_paths
    from mtu_toolkit.engine.config_loader import (
        ConfigError, add_debug_argument, run_tool, size_type)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Export the MTU inference step')
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='checkpoint (.pth); "none" for initial weights')
    parser.add_argument('output', help='TorchScript file (.pt)')
    parser.add_argument('--size', type=size_type(), default=(1280, 720), help='WIDTHxHEIGHT')
    parser.add_argument('--onnx', help='also export ONNX here (needs the onnx package)')
    parser.add_argument('--no-check', action='store_true', help='skip the equality check')
    parser.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    width, height = args.size
    outputs = [args.output] + (list(onnx_paths(args.onnx)) if args.onnx else [])
    try:
        check_export_paths(outputs, [args.config, args.checkpoint], args.overwrite)
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    if len(set(map(osp.abspath, outputs))) < len(outputs):
        print(f'error: {args.onnx}: the ONNX export would write over {args.output}',
              file=sys.stderr)
        return 2
    try:
        ckpt = None if args.checkpoint.lower() == 'none' else args.checkpoint
        restorer = init_restorer(args.config, ckpt, 'cpu')
        traced = export_torchscript(restorer, args.output, height, width)
        print(f'TorchScript step written to {args.output}')
        if not args.no_check:
            clip = torch.rand(4, 3, height, width)
            with torch.no_grad():
                diff = (run_step_module(traced, clip) - restorer.infer_clip(clip)).abs().max()
            print(f'check: max |exported - python| over 4 frames = {diff.item():.3g}')
        if args.onnx:
            try:
                paths = export_onnx(restorer, args.onnx, height, width)
                print(f'ONNX written to {paths[0]} (frames t >= 1) and {paths[1]} (frame 0)')
            except RuntimeError as err:
                print(f'ONNX skipped: {err}', file=sys.stderr)
                return 6
    except (InferenceError, ConfigError) as err:
        print(f'error: {err}', file=sys.stderr)
        return err.exit_code
    except OSError as err:  # a full disk, ... (written through a temporary: nothing left)
        print(f'error: {err.filename or args.output}: cannot be written ({err.strerror or err})',
              file=sys.stderr)
        return 5
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
