"""Tiled inference at 4K: peak memory, and how far the tiled frames are from untiled ones.

Runs ``deblur_frames`` over a real-content clip (a photograph panning, upscaled to the frame
size) twice, each in its own process so that its peak RSS is its own: untiled, and tiled
(``--tile``, ``--tile-overlap``; default the network's receptive field plus matching range).
Prints the peak RSS of both, the PSNR of the tiled frames against the untiled ones, and the
per-pixel difference near the tile seams and elsewhere.

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


def clip(width, height, frames):
    """(T, H, W, 3) uint8: the astronaut photograph panning 6 px a frame, upscaled."""
    import cv2
    from skimage import data
    img = cv2.resize(data.astronaut(), (width + 6 * frames, height), interpolation=cv2.INTER_CUBIC)
    return np.stack([img[:, 6 * t:6 * t + width] for t in range(frames)])


def run(args, tile, out):
    """One run in this process: restore the clip, save the frames, report time and peak RSS."""
    import torch

    from mtu_toolkit.apis import deblur_frames, init_restorer
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
    width, height = (int(v) for v in args.size.split('x'))
    frames = clip(width, height, args.frames)
    start = time.perf_counter()
    restored = np.stack([r for _, r in deblur_frames(model, frames)])
    seconds = time.perf_counter() - start
    np.save(out, restored)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB -> GiB
    print(json.dumps(dict(peak_rss_gib=peak, seconds=seconds, overlap=overlap)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', default='3840x2160')
    parser.add_argument('--frames', type=int, default=4)
    parser.add_argument('--tile', type=int, default=768)
    parser.add_argument('--tile-overlap', type=int)
    parser.add_argument('--config', default=osp.join(ROOT, 'configs', 'mtu', 'mtu2_gopro.py'))
    parser.add_argument('--checkpoint')
    parser.add_argument('--threads', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--child', choices=['tiled', 'untiled'], help=argparse.SUPPRESS)
    parser.add_argument('--out', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run(args, args.tile if args.child == 'tiled' else None, args.out)
        return
    results, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ('untiled', 'tiled'):
            out = osp.join(tmp, f'{kind}.npy')
            cmd = [sys.executable, __file__, '--child', kind, '--out', out] + sys.argv[1:]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f'{kind} run failed:\n{proc.stderr[-3000:]}')
            results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
            outputs[kind] = np.load(out).astype(np.float64)
    from mtu_toolkit.apis.tiling import tile_starts
    diff = np.abs(outputs['tiled'] - outputs['untiled'])
    mse = (diff ** 2).mean()
    psnr = float('inf') if mse == 0 else 10 * np.log10(255 ** 2 / mse)
    width, height = (int(v) for v in args.size.split('x'))
    overlap = results['tiled']['overlap']
    seam = np.zeros((height, width), bool)
    for starts, axis, length in ((tile_starts(height, args.tile, overlap), 0, height),
                                 (tile_starts(width, args.tile, overlap), 1, width)):
        for s in starts[1:]:  # the overlap between a tile and the one before it
            region = slice(s, min(s + overlap, length))
            if axis == 0:
                seam[region, :] = True
            else:
                seam[:, region] = True
    print(f'{args.size}, {args.frames} frames, {args.threads} threads, tile {args.tile}, '
          f'overlap {overlap} px')
    for kind in ('untiled', 'tiled'):
        r = results[kind]
        print(f'  {kind:8s} peak RSS {r["peak_rss_gib"]:.2f} GiB   {r["seconds"]:.1f} s')
    print(f'  tiled vs untiled: PSNR {psnr:.2f} dB (8-bit frames); mean |diff| at the seams '
          f'{diff[:, seam].mean():.4f}, elsewhere {diff[:, ~seam].mean():.4f} (of 255); max '
          f'{diff[:, seam].max():.0f} / {diff[:, ~seam].max():.0f}')


if __name__ == '__main__':
    main()
