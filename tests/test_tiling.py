"""Tiled inference: the blending, the per-tile recurrent state, and equality where tiles see
everything the network sees."""
import os.path as osp

import pytest
import torch

import mtu_toolkit.models  # noqa: F401
from mtu_toolkit.apis import deblur_frames
from mtu_toolkit.apis.tiling import (TiledRestorer, receptive_radius, recommended_overlap,
                                     tile_spans)
from mtu_toolkit.registry import MODELS

import prewarmed

pytestmark = pytest.mark.usefixtures('one_thread')


def tiny(units=1, blocks=0, d=2):
    torch.manual_seed(0)
    return MODELS.build(dict(type='MTURestorer', backbone=dict(
        type='MTUNet', num_units=units, channels=4, num_blocks=blocks, weight_init='kaiming',
        mc_head=dict(type='CorrelationMCHead', max_displacement=d)))).eval()


class CentreFrame(torch.nn.Module):
    """A 'restorer' that returns the centre frame and counts its calls per tile size."""

    infer_dtype = None

    def __init__(self):
        super().__init__()
        self.calls = []

    def restore_frame(self, window, state):
        self.calls.append((tuple(window.shape[-2:]), state))
        return window[:, 2].clone(), (state or 0) + 1


def test_tiles_cover_the_frame_with_the_overlap():
    assert tile_spans(100, 128, 16) == [(0, 100)]
    for length, tile, overlap in [(3840, 1024, 228), (2160, 768, 228), (3840, 768, 228),
                                  (101, 40, 12), (1000, 256, 60), (4097, 512, 100)]:
        spans = tile_spans(length, tile, overlap)
        starts = [s for s, _ in spans]
        size = spans[0][1]
        assert {n for _, n in spans} == {tile}
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
        assert len(spans) == -(-(length - overlap) // (tile - overlap))  # as few as can be


def test_blending_reproduces_what_every_tile_agrees_on_and_states_are_per_tile():
    fake = CentreFrame()
    tiled = TiledRestorer(fake, tile=24, overlap=8)
    window = torch.rand(1, 5, 3, 40, 56)
    out, states = tiled.restore_frame(window, None)
    torch.testing.assert_close(out, window[:, 2])  # weights normalise in every overlap
    n = len(tile_spans(40, 24, 8)) * len(tile_spans(56, 24, 8))
    assert len(states) == n == len(fake.calls) and states == [1] * n
    _, states = tiled.restore_frame(window, states)
    assert states == [2] * n  # each tile carries its own state to the next frame
    assert all(shape[0] <= 24 and shape[1] <= 24 for shape, _ in fake.calls)


def test_one_tile_is_the_untiled_network():
    model = tiny()
    frames = torch.rand(4, 3, 20, 28)
    with torch.inference_mode():
        torch.testing.assert_close(TiledRestorer(model, tile=32, overlap=8).infer_clip(frames),
                                   model.infer_clip(frames), rtol=0, atol=0)


def test_first_frame_core_equals_the_untiled_network():
    """With the recommended overlap, the first frame's tiles see every pixel the network reads
    for the pixels each tile keeps: the tiled frame equals the untiled one."""
    model = tiny()
    overlap = recommended_overlap(model)
    assert overlap >= receptive_radius(model.backbone) + 4 * 2
    frame = torch.rand(1, 3, 2 * overlap + 40, 3 * overlap + 48)
    tiled = TiledRestorer(model, tile=2 * overlap + 16, overlap=overlap)
    with torch.inference_mode():
        got, _ = tiled.restore_frame(frame[:, None].expand(-1, 5, -1, -1, -1), None)
        ref, _ = model.restore_frame(frame[:, None].expand(-1, 5, -1, -1, -1), None)
    # away from the tiles' own borders (reflect padding, zeros outside) the blend is exact
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    err = (got - ref)[inner].abs()
    assert err.max() < 0.02 and err.mean() < 1e-3


def test_old_states_are_released_tile_by_tile():
    """Each tile's old state is dropped once its tile is restored: the whole frame's old and
    new states never live at once (at 4K they are ~2 GB each)."""
    fake = CentreFrame()
    tiled = TiledRestorer(fake, tile=24, overlap=8)
    window = torch.rand(1, 5, 3, 40, 56)
    _, states = tiled.restore_frame(window, None)
    seen = []
    fake.restore_frame = lambda w, s: (seen.append(list(states)) or w[:, 2].clone(), s + 1)
    new = tiled.restore_frame(list(window.unbind(1)), states)[1]
    assert new is states and new == [2] * len(new)
    for i, held in enumerate(seen):  # while restoring tile i: tiles < i new, tile i dropped
        assert held[:i] == [2] * i and held[i] is None and held[i + 1:] == [1] * (len(held) - i - 1)


def test_the_stream_hands_the_tiles_unstacked_frames():
    fake = CentreFrame()
    windows = []
    tiled = TiledRestorer(fake, tile=24, overlap=8)
    tiled_restore = tiled.restore_frame
    tiled.restore_frame = lambda w, s: (windows.append(w), tiled_restore(w, s))[1]
    frames = torch.rand(6, 3, 40, 56)
    torch.testing.assert_close(tiled.infer_clip(frames), frames)
    assert all(isinstance(w, list) and len(w) == 5 for w in windows) and len(windows) == 6


def test_tiled_model_streams_through_deblur_frames():
    model = tiny()
    tiled = TiledRestorer(model, tile=16, overlap=4)
    frames = [torch.randint(0, 256, (24, 36, 3), dtype=torch.uint8).numpy() for _ in range(4)]
    pairs = list(deblur_frames(tiled, frames))
    assert len(pairs) == 4 and pairs[0][1].shape == (24, 36, 3)


def test_bad_tiles_are_refused():
    with pytest.raises(ValueError, match='multiples of 4'):
        TiledRestorer(tiny(), tile=30, overlap=8)
    with pytest.raises(ValueError, match='overlap < tile'):
        TiledRestorer(tiny(), tile=32, overlap=32)


def test_tiling_benchmark_names_a_bad_checkpoint_in_one_line(tmp_path):
    # benchmarks/tiling.py ran its runs in child processes, whose tracebacks it printed
    import sys
    script = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'benchmarks',
                      'tiling.py')
    args = [sys.executable, script, '--size', '64x48', '--frames', '2', '--tile', '32']
    proc = prewarmed.run(args + ['--checkpoint', str(tmp_path / 'none.pth')],
                         capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr == f'error: --checkpoint {tmp_path / "none.pth"}: no such file\n'
    other = tmp_path / 'mtu4.pth'  # another variant than the default config's MTU2
    torch.save({'state_dict': {'backbone.units.3.weight': torch.zeros(1)}}, other)
    proc = prewarmed.run(args + ['--checkpoint', str(other)], capture_output=True, text=True,
                         timeout=300)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith('error: ')
