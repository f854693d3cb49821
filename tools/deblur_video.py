"""Deblur your own video (or folder of frames) with a trained MTU model, streaming.

    python tools/deblur_video.py CONFIG CHECKPOINT INPUT OUTPUT [--device cuda] [--fp16|--bf16]
                                 [--side-by-side] [--fps 30] [--compile|--eager] [--quiet]
                                 [--overwrite] [--tile 768 [--tile-overlap PX]]

INPUT is a video file (mp4/avi/mov/... anything OpenCV decodes) or a folder of frames; OUTPUT a
video file (.mp4/.mov: mp4v, .avi/.mkv: MJPG) or a folder (PNG frames). The output keeps the
input's frame rate, appears only when complete, and memory stays flat however long the video.
On CPUs with AVX-512 or AVX2 the network runs on the toolkit's direct convolution kernels
(``--eager``: the plain PyTorch model; ``--compile``: torch.compile); the frames are the same to
float rounding. The output never replaces the input, nor an existing file without
``--overwrite``. ``--tile`` restores large frames (4K) tile by tile in bounded memory
(``mtu_toolkit/apis/tiling.py``). SIGINT and SIGTERM stop cleanly (nothing half-written is
left; the temporary output of a run killed with SIGKILL is removed by the next run).
CHECKPOINT may be a released file of the paper's authors (``MTU2_GoPro.pytorch``): it is
converted on loading, which one line says; see docs/official_weights.md.
Exit codes: 0 done, 2 bad config/arguments (also a ``--device`` this machine does not have, or
``--fp16``/``--bf16`` without a GPU), 3 bad input, 4 bad checkpoint, 5 output failed,
1 other inference errors, 130 interrupted (143 terminated).
"""
import argparse
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    import torch

    from mtu_toolkit.apis import (
        DeviceError, InferenceError, deblur_video, init_restorer)
    from mtu_toolkit.apis.inference import check_fps
    from mtu_toolkit.apis.video_io import check_output, quiet_opencv
    from mtu_toolkit.apis.tiling import TiledRestorer, recommended_overlap
    from mtu_toolkit.deploy import add_model_arguments, tool_model
    from mtu_toolkit.engine.config_loader import (
        ConfigError, add_debug_argument, interrupted, run_tool, terminate_like_interrupt)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Deblur a video or a folder of frames')
    parser.add_argument('config', help='model config, e.g. configs/mtu/mtu2_gopro.py')
    parser.add_argument('checkpoint', help='trained checkpoint (.pth) or a released file of the '
                        "paper's authors (.pytorch, converted on loading)")
    parser.add_argument('input', help='video file or folder of frames')
    parser.add_argument('output', help='video file (.mp4/.avi/.mov/.mkv) or folder (PNG frames)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='cpu, cuda, cuda:1, ... (default: cuda when available)')
    half = parser.add_mutually_exclusive_group()
    half.add_argument('--fp16', action='store_true', help='float16 autocast (GPU)')
    half.add_argument('--bf16', action='store_true', help='bfloat16 autocast (GPU)')
    parser.add_argument('--side-by-side', action='store_true',
                        help='write input (left) and result (right) next to each other')
    parser.add_argument('--fps', type=float, help='frame rate of a frame-folder input '
                        '(default 25) or an override of the video\'s')
    add_model_arguments(parser, 'run')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing output video file (never the input)')
    parser.add_argument('--tile', type=int, metavar='SIZE',
                        help='restore frames in SIZE x SIZE tiles (multiple of 4), each with its '
                        'own recurrent state, blended in their overlap: bounded memory for 4K')
    parser.add_argument('--tile-overlap', type=int, metavar='PX',
                        help="pixels neighbouring tiles share (multiple of 4; default: the "
                        "network's receptive field plus its matching range)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.tile_overlap is not None and args.tile is None:
        parser.error('--tile-overlap needs --tile')
    if args.tile is not None and args.tile <= 0:
        parser.error(f'--tile must be a positive size in pixels, got {args.tile}')
    try:
        check_fps(args.fps)
    except InferenceError as err:
        parser.error(f'--{err}')
    return args


def main(argv=None):
    args = parse_args(argv)
    terminate_like_interrupt()  # SIGTERM, handled like Ctrl-C (the partial output is removed)
    quiet_opencv()
    infer_dtype = 'float16' if args.fp16 else 'bfloat16' if args.bf16 else None
    try:
        if infer_dtype and not str(args.device).startswith('cuda'):
            raise DeviceError(f'--{"fp16" if args.fp16 else "bf16"} needs a GPU '
                                 f'(--device cuda); on {args.device} run in float32')
        check_output(args.output, args.overwrite, args.input)  # before the model loads
        restorer = init_restorer(args.config, args.checkpoint, args.device, infer_dtype)
        fast = tool_model(restorer, compile=args.compile, eager=args.eager)
        if args.tile:
            overlap = (recommended_overlap(restorer) if args.tile_overlap is None
                       else args.tile_overlap)
            try:
                fast = TiledRestorer(fast, args.tile, overlap)
            except ValueError as err:
                raise ConfigError(f'--tile / --tile-overlap: {err}') from None
        stats = deblur_video(fast, args.input, args.output, side_by_side=args.side_by_side,
                             fps=args.fps, progress=not args.quiet, overwrite=args.overwrite)
    except (InferenceError, ConfigError) as err:
        print(f'error: {err}', file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        return interrupted(err, 'no output written')
    print(f'{args.output}: {stats["frames"]} frames at {stats["fps"]:g} fps, '
          f'{stats["speed"]:.2f} frames/s')
    return 0


if __name__ == '__main__':
    # the API's warnings (padded frames, a truncated video) as one line each (the command
    # line only: main() called from Python leaves the warnings' format alone)
    warnings.formatwarning = lambda message, *_, **__: f'warning: {message}\n'
    sys.exit(run_tool(main))
