"""How often the motion loss's DIS targets equal the targets of the true motion (demo data).

The reference implementation distils LiteFlowNet's flow; the toolkit uses OpenCV's DIS flow of
the sharp frames (LiteFlowNet's weights cannot be had here). On the demo's synthetic videos the
camera path is known, so the true flow between consecutive sharp frames is exact: this script
renders the demo's sequences exactly as ``tools/demo.py`` does (same seed, same order), turns
both flows into the motion loss's classes (``flow_to_motion_target``: 1/4 resolution, D = 10)
and counts where they agree (frames 1..N-1 of every sequence; frame 0 has no previous frame).

    python benchmarks/motion_targets.py [--max-displacement 10]
"""
import argparse
import importlib.util
import os.path as osp
import sys

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from mtu_toolkit.datasets.flow import sharp_flow  # noqa: E402
from mtu_toolkit.datasets.synthetic import (render_camera_shake, skimage_photos,  # noqa: E402
                                            true_flow)
from mtu_toolkit.models.losses import flow_to_motion_target  # noqa: E402


def demo_recipe():
    """tools/demo.py's SPLITS and RENDER (the script is the one place they are written)."""
    spec = importlib.util.spec_from_file_location('demo', osp.join(ROOT, 'tools', 'demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo.SPLITS, demo.RENDER, demo.FRAMES, demo.SIZE


def targets(flow, d):
    return flow_to_motion_target(torch.from_numpy(flow).permute(2, 0, 1)[None], d)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--max-displacement', type=int, default=10)
    args = parser.parse_args()
    d = args.max_displacement
    splits, render, num_frames, size = demo_recipe()
    photos = skimage_photos()
    rng = np.random.default_rng(0)  # make_synthetic_dataset's seed and draw order
    rows = []
    for split, names in splits.items():
        for name in names:
            for k in range(3):
                _, sharp, views = render_camera_shake(photos[name], num_frames, size, rng,
                                                      return_views=True, **render)
                for t in range(1, num_frames):
                    dis = targets(sharp_flow(sharp[t], sharp[t - 1]), d)
                    true = targets(true_flow(views[t], views[t - 1], size), d)
                    dx = (dis % (2 * d + 1) - true % (2 * d + 1)).abs()
                    dy = (dis // (2 * d + 1) - true // (2 * d + 1)).abs()
                    rows.append((split, f'{name}_{k}', (dis == true).float().mean().item(),
                                 ((dx <= 1) & (dy <= 1)).float().mean().item()))
    print(f'demo data ({len(rows)} frame pairs, {size[1]}x{size[0]}, D = {d}): share of '
          '1/4-resolution positions where the DIS target equals the true-motion target')
    for split in splits:
        exact = [r[2] for r in rows if r[0] == split]
        near = [r[3] for r in rows if r[0] == split]
        print(f'  {split:6s} exact {100 * np.mean(exact):5.1f}%   within one class '
              f'{100 * np.mean(near):5.1f}%   (per frame: {100 * np.min(exact):.1f}% .. '
              f'{100 * np.max(exact):.1f}%)')
    print(f'  all    exact {100 * np.mean([r[2] for r in rows]):5.1f}%   within one class '
          f'{100 * np.mean([r[3] for r in rows]):5.1f}%')


if __name__ == '__main__':
    main()
