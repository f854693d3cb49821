"""Look at a few training samples after the data pipeline, before training on them.

    python tools/analysis/browse_dataset.py CONFIG [--split train] [--num-samples 4]
                                           [--frames 1] [--output-dir DIR] [--seed 0]
                                           [--flow-max PX] [--scale N] [--overwrite]
                                           [--cfg-options ...]

Builds the ``<split>_dataloader.dataset`` of the config (options applied as in
``tools/train.py``), draws ``--num-samples`` samples and writes one PNG,
``<output-dir>/<config name>_<split>.png``: a row per shown frame with the blurry input frame,
the sharp target and, when the dataset gives it (``with_flow=True``), the motion target (the
sharp frames' optical flow) as a colour picture (direction = hue, length = saturation; the key
at the top, with the length drawn fully saturated). Crops, flips and rotations act on every
frame of a clip alike, flow vectors included: a flipped clip's flow must flip its colours too.
The same ``--seed`` gives the same picture. An existing PNG of that name is replaced only with
``--overwrite`` (checked before the dataset is read).
"""
import argparse
import os
import os.path as osp
import random
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # a checkout

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    import cv2
    import numpy as np
    import torch

    from mtu_toolkit.engine.checkpoint import fsync_replace
    from mtu_toolkit.engine.config_loader import (
        ArgumentError, ConfigError, add_cfg_options_argument, add_debug_argument, load_config,
        run_tool)
    from mtu_toolkit.fileio import check_output_file, temporary_path
    from mtu_toolkit.visualization import flow_color_key, flow_to_color

#: layout of the grid (pixels): gap between panels, height of a text band, background grey
GAP, BAND, BACKGROUND = 4, 18, 32
FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.4
#: a panel is enlarged (nearest neighbour) to at least this many pixels on its longer side
MIN_PANEL = 128


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw samples of a config\'s dataset after '
                                     'its pipeline: blurry, sharp and flow')
    parser.add_argument('config', help='config file')
    parser.add_argument('--split', default='train', choices=['train', 'val', 'test'],
                        help='which dataloader\'s dataset (default: train)')
    parser.add_argument('--num-samples', type=int, default=4, help='samples (default 4)')
    parser.add_argument('--frames', type=int, default=1,
                        help='frames per sample, evenly spaced over the clip (default 1: the '
                        'middle one)')
    parser.add_argument('--output-dir', default=osp.join('work_dirs', 'browse_dataset'),
                        help='where the PNG goes (default: work_dirs/browse_dataset)')
    parser.add_argument('--seed', type=int, default=0, help='which samples and augmentations')
    parser.add_argument('--flow-max', type=float,
                        help='flow length (px) drawn fully saturated (default: the longest '
                        'vector shown)')
    parser.add_argument('--scale', type=int,
                        help=f'enlarge panels N times (default: to at least {MIN_PANEL} px)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing <output-dir>/<config name>_<split>.png')
    add_cfg_options_argument(parser, 'train_dataloader.dataset.pipeline.0.size=128')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    for name in ('num_samples', 'frames', 'scale'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {value}')
    if args.flow_max is not None and not args.flow_max > 0:
        parser.error(f'--flow-max must be > 0, got {args.flow_max}')
    return args


def build_dataset(cfg, split):
    """The dataset of ``cfg``'s ``<split>_dataloader``, built in the config's scope."""
    from mmengine.registry import init_default_scope

    import mtu_toolkit.datasets  # noqa: F401  (registers the datasets and transforms)
    from mtu_toolkit.registry import DATASETS
    loader = cfg.get(f'{split}_dataloader')
    if not loader or not loader.get('dataset'):
        raise ConfigError(f'{cfg.filename}: `{split}_dataloader.dataset` is not set')
    init_default_scope(cfg.get('default_scope', 'mtu'))
    return DATASETS.build(loader['dataset'])


def pick_frames(num, wanted):
    """Indices of ``wanted`` frames of a clip of ``num``: the middle one for 1, else evenly
    spaced from the first to the last (all of them when ``wanted >= num``)."""
    if wanted >= num:
        return list(range(num))
    if wanted == 1:
        return [(num - 1) // 2]
    return sorted(set(np.linspace(0, num - 1, wanted).round().astype(int).tolist()))


def to_image(frame):
    """(3, H, W) uint8, or float in [0, 1] (after ClipGaussianNoise) -> (H, W, 3) uint8 RGB."""
    a = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a.transpose(1, 2, 0))


def sample_rows(sample, where, frames):
    """Rows of one sample: ``[dict(label, key, frame, blur, sharp, flow or None)]`` (frame: the
    index in the sequence; images (H, W, 3) uint8 RGB, flow (H, W, 2) float32) for the picked
    frames.

    ``sample`` is what the toolkit's datasets give: ``inputs`` (T+4, 3, H, W), the T targets
    with two context frames each side, and ``data_samples`` with ``gt`` (T, 3, H, W), ``key``,
    ``frame_indices`` and optionally ``flow`` (T, 2, H, W).
    """
    try:
        inputs, meta = sample['inputs'], sample['data_samples']
        gt = meta['gt']
    except (KeyError, TypeError):
        raise ConfigError(f'{where}: a sample must be a dict with `inputs` and '
                          "`data_samples['gt']`, as the toolkit's datasets give") from None
    if gt.ndim != 4 or inputs.ndim != 4 or (inputs.shape[0] - gt.shape[0]) % 2 \
            or inputs.shape[0] < gt.shape[0]:
        raise ConfigError(f'{where}: expected inputs (T+2C, 3, H, W) and gt (T, 3, H, W), got '
                          f'{tuple(inputs.shape)} and {tuple(gt.shape)}')
    context = (inputs.shape[0] - gt.shape[0]) // 2
    flow = meta.get('flow')
    indices = meta.get('frame_indices')
    indices = list(range(gt.shape[0])) if indices is None else [int(i) for i in indices]
    rows = []
    for t in pick_frames(gt.shape[0], frames):
        row = dict(label=f"{meta.get('key', '?')} frame {indices[t]}", key=meta.get('key'),
                   frame=indices[t], blur=to_image(inputs[context + t]), sharp=to_image(gt[t]),
                   flow=None)
        if flow is not None:
            row['flow'] = np.asarray(flow[t].permute(1, 2, 0) if isinstance(flow, torch.Tensor)
                                     else np.transpose(flow[t], (1, 2, 0)), np.float32)
        rows.append(row)
    return rows


def collect_rows(dataset, num_samples, frames, seed):
    """Rows of ``num_samples`` samples drawn with ``seed`` (sample order by index)."""
    n = len(dataset)
    if n == 0:
        raise ConfigError('the dataset is empty')
    indices = sorted(np.random.default_rng(seed).choice(n, min(num_samples, n), replace=False))
    np.random.seed(seed)  # the datasets' clip starts and the transforms draw from these
    random.seed(seed)
    torch.manual_seed(seed)
    rows = []
    for i in indices:
        for row in sample_rows(dataset[int(i)], f'sample {i}', frames):
            row['label'] = f'#{i} {row["label"]}'
            rows.append(row)
    return rows


def _text(canvas, text, x, y):
    cv2.putText(canvas, text, (x, y + BAND - 5), FONT, FONT_SCALE, (235, 235, 235), 1,
                cv2.LINE_AA)


def _text_width(text):
    return cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0]


def render_grid(rows, title, flow_max=None, scale=None):
    """The picture (H, W, 3) uint8 RGB: a title band with the flow key, a band of column names,
    then per row a label band and the panels ``blur | sharp | flow``, ``GAP`` pixels apart.

    Returns:
        (np.ndarray, float | None, int): the picture, the flow length drawn fully saturated
        (None without flow) and the scale the panels were enlarged by.
    """
    with_flow = any(r['flow'] is not None for r in rows)
    if with_flow and flow_max is None:
        flow_max = max(float(np.hypot(r['flow'][..., 0], r['flow'][..., 1]).max())
                       for r in rows if r['flow'] is not None) or 1.0
    if scale is None:
        longest = max(max(r['blur'].shape[:2]) for r in rows)
        scale = max(1, -(-MIN_PANEL // longest))
    columns = ['blurry input', 'sharp target'] + (['flow (motion target)'] if with_flow else [])
    panels = []
    for r in rows:
        row = [r['blur'], r['sharp']]
        if with_flow:
            row.append(flow_to_color(r['flow'], flow_max) if r['flow'] is not None
                       else np.full_like(r['blur'], BACKGROUND))
        panels.append([np.repeat(np.repeat(p, scale, 0), scale, 1) for p in row])
    widths = [GAP + sum(p.shape[1] + GAP for p in row) for row in panels]
    key = flow_color_key(3 * BAND, background=BACKGROUND) if with_flow else None
    title_h = max(BAND, key.shape[0]) if with_flow else BAND
    key_text = f'flow key: rim = {flow_max:.3g} px' if with_flow else ''
    width = max(widths + [GAP + _text_width(title) + GAP,
                          GAP + _text_width(key_text) + GAP + (key.shape[1] if with_flow else 0)
                          + GAP]
                + [GAP + _text_width(r['label']) + GAP for r in rows])
    height = GAP + title_h + BAND + sum(BAND + row[0].shape[0] + GAP for row in panels)
    canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
    _text(canvas, title, GAP, GAP)
    if with_flow:
        canvas[GAP:GAP + key.shape[0], width - GAP - key.shape[1]:width - GAP] = key
        _text(canvas, key_text, width - 2 * GAP - key.shape[1] - _text_width(key_text),
              GAP + BAND)
    y = GAP + title_h
    x = GAP
    for name, panel in zip(columns, panels[0]):
        _text(canvas, name, x, y)
        x += panel.shape[1] + GAP
    y += BAND
    for r, row in zip(rows, panels):
        _text(canvas, r['label'], GAP, y)
        y += BAND
        x = GAP
        for p in row:
            canvas[y:y + p.shape[0], x:x + p.shape[1]] = p
            x += p.shape[1] + GAP
        y += row[0].shape[0] + GAP
    return canvas, flow_max, scale


def write_png(path, rgb):
    """Write ``rgb`` as a PNG through a temporary name (no half-written file on failure)."""
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ArgumentError(f'cannot encode {path} as PNG')
    tmp = temporary_path(path)
    try:
        with open(tmp, 'wb') as f:
            f.write(buf.tobytes())
        fsync_replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def check_output(args, out):
    """Refuse, before any work, an ``--output-dir`` that is a file and an existing ``out``
    without ``--overwrite``."""
    if osp.exists(args.output_dir) and not osp.isdir(args.output_dir):
        raise ArgumentError(f'--output-dir {args.output_dir} is a file, not a folder')
    if osp.isdir(args.output_dir):  # a folder still to be made holds nothing to replace
        try:
            check_output_file(out, [args.config], args.overwrite)
        except ValueError as err:
            raise ArgumentError(str(err)) from None


def main(argv=None):
    args = parse_args(argv)
    name = osp.splitext(osp.basename(args.config))[0]
    out = osp.join(args.output_dir, f'{name}_{args.split}.png')
    check_output(args, out)
    cfg = load_config(args.config, args.cfg_options)
    dataset = build_dataset(cfg, args.split)
    rows = collect_rows(dataset, args.num_samples, args.frames, args.seed)
    title = f'{name} {args.split}: {len(rows)} frames of {len(dataset)} samples (seed {args.seed})'
    canvas, flow_max, scale = render_grid(rows, title, args.flow_max, args.scale)
    os.makedirs(args.output_dir, exist_ok=True)
    write_png(out, canvas)
    note = f'; flow rim {flow_max:.3g} px' if flow_max is not None else '; no flow in samples'
    print(f'{out}: {len(rows)} rows, panels x{scale}{note}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
