"""Make a blurry/sharp dataset in the DVD layout from real footage or real photographs.

    # camera shake over the photographs scikit-image ships (the embedded default)
    python tools/dataset_converters/make_synthetic_blur.py data/synthetic
    # real footage: a video file or a frame folder, averaged in linear RGB
    python tools/dataset_converters/make_synthetic_blur.py data/mine --footage clip.mp4 \
        --window 7 --upsample 4 --split train
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mtu_toolkit.datasets.synthetic import (blur_from_frames, make_synthetic_dataset,  # noqa
                                            read_footage, skimage_photos, write_dvd_sequence)

#: the embedded default: photographs for training and held-out ones for testing
DEFAULT_SPLITS = dict(train=['astronaut', 'rocket', 'hubble_deep_field', 'coffee'],
                      test=['chelsea'])


def default_splits(seqs_per_photo=2):
    photos = skimage_photos()
    return {split: [(f'{name}_{k}', photos[name]) for name in names
                    for k in range(seqs_per_photo)]
            for split, names in DEFAULT_SPLITS.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out', help='output dataset root (DVD layout)')
    parser.add_argument('--footage', help='video file or frame folder (default: camera shake '
                        'over the photographs scikit-image ships)')
    parser.add_argument('--split', default='train', help='split of the footage sequence')
    parser.add_argument('--window', type=int, default=7, help='frames averaged per blurry frame')
    parser.add_argument('--upsample', type=int, default=1, help='temporal up-sampling factor')
    parser.add_argument('--frames', type=int, default=24, help='frames per shake sequence')
    parser.add_argument('--size', type=int, nargs=2, default=(144, 192), metavar=('H', 'W'))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.footage:
            blur, sharp = blur_from_frames(read_footage(args.footage), args.window, args.upsample)
            if not blur:
                raise ValueError(f'{args.footage}: fewer frames than --window {args.window}')
            name = osp.splitext(osp.basename(osp.normpath(args.footage)))[0]
            write_dvd_sequence(args.out, args.split, name, blur, sharp)
        else:
            make_synthetic_dataset(args.out, default_splits(), args.frames, tuple(args.size),
                                   args.seed)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
