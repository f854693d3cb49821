"""Motion compensation at the network level: a clip that translates by a known amount gives
that displacement, and the warped previous feature lines up with the current frame."""
import pytest
import torch

import mtu_toolkit.models  # noqa: F401
from mtu_toolkit.models.window import WINDOW
from mtu_toolkit.registry import MODELS

pytestmark = pytest.mark.usefixtures('one_thread')


def translating_windows(dx, dy, frames=2, size=(160, 192), seed=0):
    """Windows of a textured scene moving (dx, dy) pixels a frame: frame_t(x) = scene(x - t*d),
    so frame_t(x) = frame_{t-1}(x - d)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    margin = 80
    scene = torch.nn.functional.avg_pool2d(
        torch.rand(1, 3, h + 2 * margin + 8, w + 2 * margin + 8, generator=g), 3, 1)[0]
    clip = torch.stack([scene[:, margin - t * dy:margin - t * dy + h,
                              margin - t * dx:margin - t * dx + w]
                        for t in range(frames + WINDOW - 1)])
    return [clip[t:t + WINDOW][None] for t in range(frames)]


@pytest.mark.parametrize('dx, dy', [(8, -4), (-12, 4), (0, 8)])
def test_matching_finds_the_translation_and_the_warp_lines_up(dx, dy):
    torch.manual_seed(0)
    net = MODELS.build(dict(type='MTUNet', num_units=2, channels=8, num_blocks=1,
                            weight_init='kaiming',
                            mc_head=dict(type='CorrelationMCHead', max_displacement=4))).eval()
    first, second = translating_windows(dx, dy)
    with torch.no_grad():
        _, state = net(first, None)
        outputs, _ = net(second, state)
    disp = outputs['mc'][0]['motion']  # (1, 2, h/4, w/4): frame_t(x) = frame_{t-1}(x + 4 d)
    # away from the borders (the features' receptive field, ~40 px, sees zero padding there,
    # and the content entering the frame has no match)
    interior = disp[0, :, 11:-11, 11:-11]
    assert (interior[0] == -dx // 4).all() and (interior[1] == -dy // 4).all()
    # the previous frame's feature warped by it lines up: shifted by the true motion
    with torch.no_grad():
        warped = net.mc_head.warp(state.feat, disp)
    shifted = torch.roll(state.feat, (dy, dx), (2, 3))
    m = 64  # the last unit's feature: its receptive field, and the rolled-in edge
    torch.testing.assert_close(warped[..., m:-m, m:-m], shifted[..., m:-m, m:-m], rtol=0,
                               atol=1e-6)
