"""Where the blurry and sharp frames of DVD, GoPro_Large and REDS trees live (MTU_NETWORK.md).

    DVD:    <root>/<split>/<video>/{input,GT}/<frame>.jpg|png
    GoPro:  <root>/<split>/<seq>/{blur_gamma,sharp}/<frame>.png   (input: blur_gamma)
    REDS:   <root>/<split>_blur/<seq>/<frame>.png, <root>/<split>_sharp/<seq>/<frame>.png
"""
import os
import os.path as osp

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp')
LAYOUTS = ('dvd', 'gopro', 'reds')


def _subdirs(folder):
    """Sorted visible sub-folders (hidden ones such as the flow cache ``.mtu_flow`` are not
    splits or sequences)."""
    return sorted(d for d in os.listdir(folder)
                  if not d.startswith('.') and osp.isdir(osp.join(folder, d)))


def side_dir(root, layout, split, seq, side):
    """Folder of the ``side`` ('blur' | 'sharp') frames of sequence ``seq``."""
    if layout == 'dvd':
        return osp.join(root, split, seq, 'input' if side == 'blur' else 'GT')
    if layout == 'gopro':
        return osp.join(root, split, seq, 'blur_gamma' if side == 'blur' else 'sharp')
    if layout == 'reds':
        return osp.join(root, f'{split}_{side}', seq)
    raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')


def list_sequences(root, layout, split):
    """Sorted sequence names of a split; a clear error when the split is missing."""
    top = osp.join(root, f'{split}_blur') if layout == 'reds' else osp.join(root, split)
    if not osp.isdir(top):
        raise FileNotFoundError(f'{layout} dataset: split folder {top} does not exist')
    seqs = _subdirs(top)
    if not seqs:
        raise FileNotFoundError(f'{layout} dataset: no sequences in {top}')
    return seqs


def list_frames(folder):
    """Sorted image file names of a frame folder; a clear error when missing or empty."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'frame folder {folder} does not exist')
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTS))
    if not names:
        raise FileNotFoundError(f'frame folder {folder} has no images {IMAGE_EXTS}')
    return names


def detect_layout(root):
    """'dvd', 'gopro' or 'reds' from the folder names of a dataset tree."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'dataset root {root} does not exist')
    entries = os.listdir(root)
    if any(e.endswith('_blur') for e in entries):
        return 'reds'
    for split in _subdirs(root):
        split_dir = osp.join(root, split)
        for seq in _subdirs(split_dir):
            sub = set(os.listdir(osp.join(split_dir, seq)))
            if {'input', 'GT'} <= sub:
                return 'dvd'
            if {'blur_gamma', 'sharp'} <= sub or {'blur', 'sharp'} <= sub:
                return 'gopro'
    raise ValueError(f'cannot detect the layout of {root}: expected DVD ({{split}}/<video>/'
                     '{input,GT}), GoPro ({split}/<seq>/{blur_gamma,sharp}) or REDS '
                     '({split}_blur, {split}_sharp)')


def list_splits(root, layout):
    """Sorted split names of a dataset tree ('train', 'test', ...)."""
    if layout == 'reds':
        return sorted(e[:-5] for e in _subdirs(root) if e.endswith('_blur'))
    return _subdirs(root)
