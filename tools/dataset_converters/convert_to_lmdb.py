"""Convert a DVD, GoPro_Large or REDS tree into one LMDB per split and side.

    python tools/dataset_converters/convert_to_lmdb.py SRC_ROOT OUT_ROOT [--layout auto]
        [--splits train test] [--flow]

Writes ``OUT_ROOT/<split>/{blur,sharp}.lmdb`` (PNG frames under ``<seq>/<frame:08d>``, a
``meta_info.txt`` each) and with ``--flow`` ``flow.lmdb`` (DIS flow of the sharp frames, for
the motion loss). Each LMDB is written under a temporary name and renamed when complete.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mtu_toolkit.datasets.lmdb_writer import convert_dataset  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='dataset root (DVD, GoPro_Large or REDS layout)')
    parser.add_argument('out', help='output root for the LMDBs')
    parser.add_argument('--layout', default='auto', choices=['auto', 'dvd', 'gopro', 'reds'])
    parser.add_argument('--splits', nargs='+', help='splits to convert (default: all)')
    parser.add_argument('--flow', action='store_true', help='also store sharp-frame flow')
    args = parser.parse_args(argv)
    start = time.time()
    try:
        result = convert_dataset(args.src, args.out, args.layout, args.splits, args.flow)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    print()
    for split, seqs in result.items():
        print(f'{split}: {len(seqs)} sequences, {sum(seqs.values())} frames -> '
              f'{osp.join(args.out, split)}')
    print(f'done in {time.time() - start:.1f} s')


if __name__ == '__main__':
    main()
