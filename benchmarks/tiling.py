"""Tiled inference at 4K: peak memory, and how far the tiled frames are from untiled ones.

Writes a real-content clip (a photograph panning, upscaled to the frame size) as a folder of
PNG frames and runs ``deblur_video`` on it twice, each in its own process so that its peak RSS
is its own (decoding, the model and encoding, as ``tools/deblur_video.py`` runs them): untiled,
and tiled (``--tile``, ``--tile-overlap``; default the network's receptive field plus matching
range). Prints the peak RSS of both, the PSNR of the tiled frames against the untiled ones,
and the per-pixel difference in the tiles' overlaps and elsewhere.

    python benchmarks/tiling.py [--size 3840x2160] [--frames 4] [--tile 768] \\
        [--config configs/mtu/mtu2_gopro.py] [--checkpoint CKPT]

Without a checkpoint the network has random He-initialised weights (the point is the tiling,
not the deblurring); with one (e.g. outputs/demo/mtu2_demo.pth and its config
configs/demo/mtu2_synthetic.py) the frames are a trained network's.
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from mtu_toolkit.analysis.benchmark import check_timing_arguments, frame_size  # noqa: E402


def clip(width, height, frames):
    """(T, H, W, 3) uint8: the astronaut photograph panning 6 px a frame, upscaled."""
    import cv2
    from skimage import data
    img = cv2.resize(data.astronaut(), (width + 6 * frames, height), interpolation=cv2.INTER_CUBIC)
    return np.stack([img[:, 6 * t:6 * t + width] for t in range(frames)])


def run(args, tile, src, dst):
    """One run in this process: deblur the frame folder ``src`` into ``dst``; report the time,
    the peak RSS and the overlap."""
    import torch

    from mtu_toolkit.apis import deblur_video, init_restorer
    from mtu_toolkit.apis.tiling import TiledRestorer, recommended_overlap
    from mtu_toolkit.deploy import tool_model
    torch.set_num_threads(args.threads)
    restorer = init_restorer(args.config, args.checkpoint)
    if args.checkpoint is None:
        torch.manual_seed(0)
        restorer.backbone.init_weights('kaiming')
    model = tool_model(restorer)
    overlap = None
    if tile:
        overlap = args.tile_overlap or recommended_overlap(restorer)
        model = TiledRestorer(model, tile, overlap)
    start = time.perf_counter()
    deblur_video(model, src, dst, progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB -> GiB
    print(json.dumps(dict(peak_rss_gib=peak, seconds=seconds, overlap=overlap)))


def read_frames(folder):
    import cv2
    return np.stack([cv2.imread(osp.join(folder, name)) for name in sorted(os.listdir(folder))])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=frame_size, default=(3840, 2160),
                        help='WIDTHxHEIGHT, multiples of 4 (default 3840x2160)')
    parser.add_argument('--frames', type=int, default=4)
    parser.add_argument('--tile', type=int, default=768)
    parser.add_argument('--tile-overlap', type=int)
    parser.add_argument('--config', default=osp.join(ROOT, 'configs', 'mtu', 'mtu2_gopro.py'))
    parser.add_argument('--checkpoint')
    parser.add_argument('--threads', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--child', choices=['tiled', 'untiled'], help=argparse.SUPPRESS)
    parser.add_argument('--src', help=argparse.SUPPRESS)
    parser.add_argument('--dst', help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_timing_arguments(parser, args)
    if args.child:
        from mtu_toolkit.apis import InferenceError
        try:
            run(args, args.tile if args.child == 'tiled' else None, args.src, args.dst)
        except InferenceError as err:  # a checkpoint of another variant, ...: one line
            sys.exit(f'error: {err}')
        return
    for option, path in (('--config', args.config), ('--checkpoint', args.checkpoint)):
        if path is not None and not osp.isfile(path):
            sys.exit(f'error: {option} {path}: no such file')
    import cv2
    width, height = args.size
    results, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        src = osp.join(tmp, 'blurry')
        os.makedirs(src)
        for t, rgb in enumerate(clip(width, height, args.frames)):
            cv2.imwrite(osp.join(src, f'{t:04d}.png'), rgb[..., ::-1])
        for kind in ('untiled', 'tiled'):
            dst = osp.join(tmp, kind)
            cmd = [sys.executable, __file__, '--child', kind, '--src', src, '--dst', dst]
            proc = subprocess.run(cmd + sys.argv[1:], capture_output=True, text=True)
            if proc.returncode:
                last = (proc.stderr.strip().splitlines() or [''])[-1]
                sys.exit(last if last.startswith('error: ') else
                         f'{kind} run failed:\n{proc.stderr[-3000:]}')
            results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
            outputs[kind] = read_frames(dst).astype(np.float64)
    from mtu_toolkit.apis.tiling import tile_spans
    diff = np.abs(outputs['tiled'] - outputs['untiled'])
    mse = (diff ** 2).mean()
    psnr = float('inf') if mse == 0 else 10 * np.log10(255 ** 2 / mse)
    overlap = results['tiled']['overlap']
    seam = np.zeros((height, width), bool)
    for spans, axis in ((tile_spans(height, args.tile, overlap), 0),
                        (tile_spans(width, args.tile, overlap), 1)):
        for (prev, size), (start, _) in zip(spans, spans[1:]):  # a tile and the one before
            region = slice(start, prev + size)
            if axis == 0:
                seam[region, :] = True
            else:
                seam[:, region] = True
    print(f'{width}x{height}, {args.frames} frames, {args.threads} threads, tile {args.tile}, '
          f'overlap {overlap} px')
    for kind in ('untiled', 'tiled'):
        r = results[kind]
        print(f'  {kind:8s} peak RSS {r["peak_rss_gib"]:.2f} GiB   {r["seconds"]:.1f} s')
    print(f'  tiled vs untiled: PSNR {psnr:.2f} dB (8-bit frames); mean |diff| in the overlaps '
          f'{diff[:, seam].mean():.4f}, elsewhere {diff[:, ~seam].mean():.4f} (of 255); max '
          f'{diff[:, seam].max():.0f} / {diff[:, ~seam].max():.0f}')


if __name__ == '__main__':
    main()
