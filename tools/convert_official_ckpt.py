"""Convert a released checkpoint of the paper's authors to a checkpoint of this toolkit.

    python tools/convert_official_ckpt.py SRC.pytorch DST.pth [--overwrite]

SRC is one of the released files (``MTU2_DVD.pytorch``, ``MTU10_L_GoPro.pytorch``, ...: the
``state_dict`` of the authors' network, keys ``[module.]Network.*``, with or without the
training-only deblur layers), or a dict that holds one such state dict under one key
(``{'state_dict': ...}``, ``{'params': ...}``). The variant is read from the tensors' shapes,
every tensor is mapped and checked, and DST is written atomically (temporary name + rename) in
mmengine's layout ``{'meta': {...}, 'state_dict': {...}}``, loadable with
``torch.load(weights_only=True)``; the folders of DST that do not exist are made. Any tensor that
maps to nothing, is missing or has the wrong shape stops the conversion; nothing is written then.
The configs that fit are printed: the dataset is not in the weights, so pick the one of the
dataset the file was trained on.

The tools also take a released file directly (converted on loading; not one under a key): this
script is for keeping a converted copy. Exit codes: 0 done, 2 bad arguments or input, 5 output
failed.
"""
import argparse
import io
import os
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    import torch

    from mtu_toolkit.engine.checkpoint import strip_wrapper_prefix, why_not_loaded
    from mtu_toolkit.fileio import check_output_file, check_writable_folder, write_atomically
    from mtu_toolkit.models.official_checkpoint import (
        BACKBONE_PREFIX, OfficialCheckpointError, convert_official_state_dict,
        is_official_state_dict)


class ConvertError(Exception):
    """Bad arguments or input: one line naming the file."""
    exit_code = 2


class WriteError(ConvertError):
    """The output cannot be written."""
    exit_code = 5


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert a released MTU checkpoint (*.pytorch) to this toolkit's format")
    parser.add_argument('src', help='released checkpoint, e.g. MTU2_DVD.pytorch')
    parser.add_argument('dst', help='checkpoint to write, e.g. mtu2_dvd.pth')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing DST')
    return parser.parse_args(argv)


def check_paths(src, dst, overwrite):
    if osp.isdir(src):
        raise ConvertError(f'{src}: is a folder, not a checkpoint file')
    if not osp.isfile(src):
        raise ConvertError(f'{src}: not a regular file' if osp.exists(src)
                           else f'{src}: no such file')
    if dst.endswith(('/', os.sep)) or osp.basename(dst) in ('', '.', '..'):
        raise ConvertError(f'{dst}: names a folder; give the file to write, e.g. '
                           f'{osp.join(dst, "mtu2_dvd.pth")}')
    parts = dst.replace(os.sep, '/').split('/')
    for i in range(1, len(parts)):
        if parts[i] == '..' and not osp.isdir('/'.join(parts[:i]) or '/'):
            raise ConvertError(f'{dst}: {"/".join(parts[:i])} (before its "..") is not a '
                               'folder; give the path without ".."')
    missing = missing_folders(dst)
    existing = osp.dirname(missing[-1]) if missing else osp.dirname(osp.abspath(dst))
    if not osp.isdir(existing):
        raise ConvertError(f'{dst}: {existing} is a file, not a folder' if osp.isfile(existing)
                           else f'{dst}: {existing} is not a folder')
    try:
        if missing:  # (then DST does not exist, and is not SRC)
            check_writable_folder(dst, existing)
        else:
            check_output_file(dst, [src], overwrite)
    except ValueError as err:
        raise ConvertError(str(err)) from None


def missing_folders(dst):
    """The folders of ``dst`` that do not exist (made before writing), deepest first."""
    missing, folder = [], osp.dirname(osp.abspath(dst))
    while not osp.lexists(folder):
        missing.append(folder)
        folder = osp.dirname(folder)
    return missing


def load_released(src):
    """The released state dict in ``src`` and the key it was found under (None: the file is the
    state dict itself), loaded weights-only: no code runs."""
    try:
        with warnings.catch_warnings():  # (torch's on pickle protocols and TorchScript files)
            warnings.simplefilter('ignore', UserWarning)
            state = torch.load(src, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001 - one line naming the file
        raise ConvertError(f'{src}: cannot be read as a weights-only PyTorch file: '
                           f'{why_not_loaded(err, src)}') from None
    if is_official_state_dict(state):
        return state, None
    key = released_key(src, state)
    return state[key], key


def released_key(src, state):
    """The one key of the dict ``state`` under which it holds a released state dict."""
    if not isinstance(state, dict):
        raise ConvertError(f'{src}: not a released MTU checkpoint (it holds a '
                           f'{type(state).__name__}, not a state dict)')
    keys = [k for k, v in state.items() if is_official_state_dict(v)]
    if len(keys) == 1:
        return keys[0]
    if keys:
        raise ConvertError(f'{src}: holds released state dicts under {len(keys)} keys '
                           f'({", ".join(map(repr, keys))}); save the one to convert on its own')
    inner = state.get('state_dict')
    if isinstance(inner, dict) and any(isinstance(k, str) and k.startswith(BACKBONE_PREFIX)
                                       for k in strip_wrapper_prefix(inner)):
        raise ConvertError(f'{src}: not a released MTU checkpoint (a checkpoint of this toolkit '
                           'already: backbone.* weights; the tools load it as it is)')
    raise ConvertError(f'{src}: not a released MTU checkpoint (no Network.base_conv.0.weight, '
                       'neither at the top nor under one of its keys)')


def write_checkpoint(dst, checkpoint):
    """``torch.save`` into memory, then written through a temporary name and renamed: ``dst``
    is whole or untouched (a full disk is one line, not torch's RuntimeError). Its missing
    folders are made, and removed again when the write fails."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    made = missing_folders(dst)
    try:
        os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
        write_atomically(dst, buffer.getbuffer())
    except OSError as err:
        for folder in made:  # deepest first; one that makedirs did not reach is skipped
            if not osp.isdir(folder):
                continue
            try:
                os.rmdir(folder)
            except OSError:
                break
        raise WriteError(f'{dst}: cannot be written ({err.strerror or err})') from None


def main(argv=None):
    args = parse_args(argv)
    try:
        check_paths(args.src, args.dst, args.overwrite)
        state, key = load_released(args.src)
        try:
            conversion = convert_official_state_dict(state)
        except OfficialCheckpointError as err:
            raise ConvertError(f'{args.src}: {err}; nothing written') from None
        meta = conversion.meta(osp.abspath(args.src))
        write_checkpoint(args.dst, dict(meta=meta, state_dict=conversion.state_dict))
    except ConvertError as err:
        print(f'error: {err}', file=sys.stderr)
        return err.exit_code
    arch = conversion.arch
    under = '' if key is None else f" (the state dict under {key!r})"
    print(f'{args.src}{under}: {arch.describe()}')
    count = len(conversion.state_dict)
    print(f'wrote {args.dst} ({count} tensor{"s" * (count != 1)})')
    if conversion.configs:
        print('configs that fit (the dataset is not in the weights: use the one the file was '
              'trained on):')
        for path in conversion.configs:
            print(f'  {path}')
        example = conversion.configs[0]
    else:
        print('no config in configs/mtu/ fits; the model: '
              f'model.backbone={arch.backbone_cfg()}')
        example = 'CONFIG'
    print(f'e.g.: python tools/test.py {example} {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
