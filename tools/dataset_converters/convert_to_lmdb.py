"""Convert a DVD, GoPro_Large or REDS tree into one LMDB per split and side.

    python tools/dataset_converters/convert_to_lmdb.py SRC_ROOT OUT_ROOT [--layout auto]
        [--splits train test] [--flow]

Writes ``OUT_ROOT/<split>/{blur,sharp}.lmdb`` (PNG frames under ``<seq>/<frame:08d>``, a
``meta_info.txt`` each) and with ``--flow`` ``flow.lmdb`` (DIS flow of the sharp frames, for
the motion loss). Each LMDB is written under a temporary name, and a split's databases are
swapped in together when all are complete: an error, Ctrl-C or SIGTERM leaves the output as
it was (one line says why).
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    import lmdb

    from mtu_toolkit.datasets.lmdb_writer import convert_dataset
    from mtu_toolkit.engine.config_loader import (
        interrupted, terminate_like_interrupt, user_error)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='dataset root (DVD, GoPro_Large or REDS layout)')
    parser.add_argument('out', help='output root for the LMDBs')
    parser.add_argument('--layout', default='auto', choices=['auto', 'dvd', 'gopro', 'reds'])
    parser.add_argument('--splits', nargs='+', help='splits to convert (default: all)')
    parser.add_argument('--flow', action='store_true', help='also store sharp-frame flow')
    args = parser.parse_args(argv)
    start = time.time()
    terminate_like_interrupt()
    try:
        result = convert_dataset(args.src, args.out, args.layout, args.splits, args.flow)
    except KeyboardInterrupt as err:
        return interrupted(err, f'nothing written to {args.out} (what was there is unchanged)')
    except lmdb.Error as err:  # LMDB reports a full disk as an I/O error of its commit
        sys.exit(f'error: writing the LMDBs under {args.out} failed ({err}; is the disk '
                 'full?); nothing was written')
    except (OSError, ValueError) as err:
        found = user_error(err)
        if found is None and not isinstance(err, ValueError):
            raise
        sys.exit(f'error: {found[0] if found else err}')
    print()
    for split, seqs in result.items():
        print(f'{split}: {len(seqs)} sequences, {sum(seqs.values())} frames -> '
              f'{osp.join(args.out, split)}')
    print(f'done in {time.time() - start:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
