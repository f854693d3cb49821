"""Optical flow as colour, Middlebury style (Baker et al., "A Database and Evaluation
Methodology for Optical Flow", IJCV 2011): the direction of a vector picks the hue on a colour
wheel, its length the saturation (white = no motion).

Directions in image coordinates (x right, y down) come out as: right red, down yellow-orange,
left cyan-blue, up blue-violet. Vectors longer than the normalising length are drawn darker (75%)
instead of being clipped, so that they stand out. Unlike the original tool, the angle spans the
whole wheel, so the colours also join up where it closes (pointing right).
"""
import numpy as np

#: steps of the wheel from one primary/secondary colour to the next: red -> yellow -> green ->
#: cyan -> blue -> magenta -> red. Uneven: more steps where the eye tells more shades apart
#: (red to yellow) than where it tells few (yellow to green).
WHEEL_STEPS = (15, 6, 4, 11, 13, 6)
_CORNERS = ((1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 1, 1), (0, 0, 1), (1, 0, 1))


def color_wheel():
    """(55, 3) float64 RGB in [0, 1]: the hues around the wheel, linear between the corners."""
    rows = []
    for i, steps in enumerate(WHEEL_STEPS):
        start, end = np.array(_CORNERS[i], float), np.array(_CORNERS[(i + 1) % 6], float)
        t = np.arange(steps)[:, None] / steps
        rows.append(start + (end - start) * t)
    return np.concatenate(rows)


def flow_to_color(flow, max_magnitude=None):
    """Colour picture of a flow field.

    Args:
        flow (np.ndarray): (H, W, 2) (dx, dy) in pixels; non-finite vectors count as zero.
        max_magnitude (float | None): the length (px) drawn fully saturated; None uses the
            longest vector of ``flow``. Give the same value to compare several pictures.

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB.
    """
    flow = np.asarray(flow, np.float64)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f'flow must be (H, W, 2), got {flow.shape}')
    flow = np.where(np.isfinite(flow), flow, 0.)
    u, v = flow[..., 0], flow[..., 1]
    magnitude = np.hypot(u, v)
    if max_magnitude is None:
        max_magnitude = float(magnitude.max()) if magnitude.size else 0.
    radius = magnitude / max(float(max_magnitude), 1e-9)
    wheel = color_wheel()
    n = len(wheel)
    # the angle from pointing right (red, both ends of the wheel) around to it again: the
    # wheel spans all n steps, so the colours are continuous where it closes
    position = (np.arctan2(-v, -u) / np.pi + 1) / 2 * n % n
    k0 = np.minimum(np.floor(position).astype(np.int64), n - 1)
    k1 = (k0 + 1) % n
    frac = (position - k0)[..., None]
    hue = (1 - frac) * wheel[k0] + frac * wheel[k1]
    r = radius[..., None]
    color = np.where(r <= 1, 1 - r * (1 - hue), hue * 0.75)
    return np.clip(np.round(color * 255), 0, 255).astype(np.uint8)


def flow_color_key(size=64, background=255):
    """(size, size, 3) uint8 RGB legend: the colour of each direction and length, a disc whose
    rim is ``max_magnitude`` (the centre is no motion); ``background`` outside the disc."""
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([(x - c) / c, (y - c) / c], axis=-1)
    key = flow_to_color(flow, max_magnitude=1.0)
    key[np.hypot(flow[..., 0], flow[..., 1]) > 1] = background
    return key
