"""By hand, not in CI: the five paper variants at their real sizes against the reference network.

    python tests/golden/check_official_variants.py --reference /path/to/RealTime_VDBLR \\
        [--video /usr/share/doc/opencv-doc/examples/data/vtest.avi] [--variants MTU2 ...]

For each variant (MTU1, MTU2, MTU4, MTU10: 26 channels, 8 residual blocks; MTU10_L: 48 channels,
6 blocks; all matching in the first unit only) and two random initialisations in the released
format (the authors' N(0, 0.03) for every convolution, and ``0.7 x`` He-normal with the output
layers at 0.3 of that, where the matching moves more; biases N(0, 0.05) in both), this

1. runs the reference network (imported from ``--reference`` and patched at run time as
   ``make_official_fixture.py`` describes) on 6 frames of real footage (frames 100..105 of
   ``vtest.avi`` at full resolution, cropped 128x192 at (y, x) = (20, 150 + 8k) for frame k:
   the building, vans and pedestrians, panning 2 motion-feature pixels per frame), fed as its
   ``eval.py`` does, in its training form (with ``deblur_layer``) and its test-time form
   (without; MTU1 has no deblur layer, so both forms are the same there);
2. writes both state dicts as released files (``Network.*``), converts each with
   ``tools/convert_official_ckpt.py``'s code, loads it into the restorer with the tools' strict
   loading, and restores the clip with ``infer_clip``;
3. prints a markdown table of the largest absolute difference between our frames and the
   reference's (all frames, all pixels), with how much the network changes the frames, how
   many positions its matching moves, and at how many positions our displacement differs from
   the reference's. Such a difference can only come from a near-tie of the matching cost (two
   shifts whose smoothed costs are equal to float rounding), which two implementations summing
   in different orders break differently; the table gives the largest top-2 gap of the
   reference's own cost volume at those positions, and the largest frame difference when our
   network is given the reference's displacements (the same network, the same decisions).
   docs/official_weights.md holds the table of a run.
"""
import argparse
import os.path as osp
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))  # the checkout's mtu_toolkit

import make_official_fixture as fixture  # noqa: E402

from mtu_toolkit.apis.init_restorer import load_weights  # noqa: E402
from mtu_toolkit.models.official_checkpoint import PAPER_VARIANTS  # noqa: E402
from mtu_toolkit.registry import MODELS  # noqa: E402

VARIANTS = {name: dict(num_units=u, channels=c, num_blocks=b)
            for (u, c, b), name in PAPER_VARIANTS.items()}
INITS = {'N(0, 0.03)': dict(std=0.03), '0.7 He': dict(std=None)}


def ours(path, arch_cfg, clip, forced_motion=None):
    """Our frames and displacements (T, 2, h, w) from the released file at ``path`` (the
    tools' loader converts it); ``forced_motion`` (T, 2, h, w): use these displacements
    instead of our matching's."""
    import mtu_toolkit.models  # noqa: F401
    restorer = MODELS.build(dict(type='MTURestorer', backbone=arch_cfg)).eval()
    load_weights(restorer, path, f'checkpoint {path}', report=lambda msg: None)
    head, motions = restorer.backbone.mc_head, []
    estimate = head.estimate

    def recording(cur, prev):
        aux = estimate(cur, prev)
        if forced_motion is not None:
            aux['motion'] = forced_motion[len(motions)][None].to(aux['motion'])
        motions.append(aux['motion'][0])
        return aux

    head.estimate = recording
    with torch.no_grad():
        return restorer.infer_clip(clip), torch.stack(motions)


def record_costs(wrapper):
    """Make the reference network keep its smoothed cost volume of each frame (N, (2D+1)^2,
    h, w), recomputed from the normalised features its correlation receives."""
    net, volumes = wrapper.Network, []
    corr = net.corr.forward

    def recording(f1, f2):
        out = corr(f1, f2)
        volumes.append(F.avg_pool2d(f1.shape[1] * out, 5, 1, 2)[0])
        return out

    net.corr.forward = recording
    return volumes


def tie_gap(volumes, positions):
    """Largest gap between the two best costs of the reference's volumes at ``positions``
    (t, y, x)."""
    gaps = [volumes[t][:, y, x].topk(2).values for t, y, x in positions.tolist()]
    return max((g[0] - g[1]).item() for g in gaps) if gaps else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reference', required=True,
                        help='checkout of github.com/codeslake/RealTime_VDBLR')
    parser.add_argument('--video', default=fixture.VIDEO)
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)

    try:  # a wrong --reference or --video: one line, not a traceback
        network_cls = fixture.load_reference_network(args.reference)
        clip = fixture.to_tensor(fixture.read_clip(args.video, scale=1, size=(128, 192),
                                                   origin=(20, 150), pan=(0, 8)))
    except (FileNotFoundError, fixture.SetupError) as err:
        parser.exit(2, f'error: {err}\n')
    print(f'clip: {tuple(clip.shape)} from {args.video}')
    print('| variant | init | deblur_layer in file | max abs diff | mean abs diff | '
          'displacements differing (top-2 gap) | max abs diff, reference displacements | '
          'mean abs(out - in) | matching moved |')
    print('|---|---|---|---|---|---|---|---|---|')
    worst = worst_same = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            size = VARIANTS[name]
            for init, init_kw in INITS.items():
                start = time.time()
                state = fixture.random_released_state(network_cls, half=False, **init_kw, **size)
                arch_cfg = None
                for with_deblur in (True, False):
                    net = fixture.build_reference(network_cls, with_deblur, **size)
                    part = {k: v for k, v in state.items()
                            if with_deblur or '.deblur_layer.' not in k}
                    net.load_state_dict(part, strict=True)
                    volumes = record_costs(net)
                    ref, motion = fixture.run_reference(net, clip)
                    if with_deblur:
                        ref_train = ref
                    else:  # the reference's two forms give the same frames
                        assert torch.equal(ref, ref_train)
                    path = osp.join(tmp, f'{name}.pytorch')
                    torch.save(part, path)
                    if arch_cfg is None:
                        from mtu_toolkit.models.official_checkpoint import read_architecture
                        arch_cfg = read_architecture(part).backbone_cfg()
                    got, got_motion = ours(path, arch_cfg, clip)
                    diff = (got - ref).abs()
                    worst = max(worst, diff.max().item())
                    moved = (motion[1:] != 0).any(1).float().mean().item()
                    differ = (got_motion != motion).any(1).nonzero()
                    gap = tie_gap(volumes, differ)
                    ties = f'{len(differ)}' + (f' (gap <= {gap:.0e})' if gap is not None else '')
                    if len(differ):  # the same network given the same matching decisions?
                        same = (ours(path, arch_cfg, clip, motion)[0] - ref).abs().max().item()
                    else:
                        same = diff.max().item()
                    worst_same = max(worst_same, same)
                    deblur = 'yes' if with_deblur and size['num_units'] > 1 else 'no'
                    print(f'| {name} | {init} | {deblur} | {diff.max().item():.2e} | '
                          f'{diff.mean().item():.1e} | {ties} | {same:.2e} | '
                          f'{(ref - clip).abs().mean().item():.3f} | {100 * moved:.0f}% |',
                          flush=True)
                print(f'<!-- {name} {init}: {time.time() - start:.0f} s -->', flush=True)
    print(f'largest difference: {worst:.2e}; given the reference\'s displacements: '
          f'{worst_same:.2e}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
