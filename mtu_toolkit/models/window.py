"""The model's input window, defined once: which frames restore frame t, in which order.

The network restores frame t from the blurry frames I_{t-2} .. I_{t+2} (``CONTEXT`` = 2 frames
each side: a latency of two frames) and the state of frame t-1. At the ends of a sequence the
indices are clamped (frame 0 uses itself for t-1 and t-2; the last frame repeats for t+1,
t+2). A training clip of T target frames therefore carries T + 2 * CONTEXT frames, and the
window of its target t is ``clip[:, t:t + WINDOW]``.

    >>> clamped_indices(0, 6)
    [0, 0, 0, 1, 2]
    >>> padded_indices(3)          # a whole sequence of 3 frames with its clamped context
    [0, 0, 0, 1, 2, 2, 2]
"""
#: frames of context each side of the restored frame
CONTEXT = 2
#: frames in a window: I_{t-CONTEXT} .. I_{t+CONTEXT}
WINDOW = 2 * CONTEXT + 1
#: position of the restored frame I_t in the window
CENTER = CONTEXT


def clamped_indices(t, num_frames, first=0):
    """Frame indices of frame ``t``'s window, clamped to ``[first, num_frames - 1]``."""
    return [min(max(i, first), num_frames - 1) for i in range(t - CONTEXT, t + CONTEXT + 1)]


def padded_indices(num_frames, start=0, length=None, first=0):
    """Indices of the targets ``start .. start + length - 1`` (default: the whole sequence)
    with their context, clamped to ``[first, num_frames - 1]``: T + 2 * CONTEXT indices."""
    length = num_frames - start if length is None else length
    return [min(max(i, first), num_frames - 1)
            for i in range(start - CONTEXT, start + length + CONTEXT)]


def window_at(clip, t):
    """The window (B, WINDOW, 3, H, W) of target ``t`` of a clip (B, T + 2 * CONTEXT, 3, H, W)
    that carries its context frames."""
    return clip[:, t:t + WINDOW]


def targets_of(clip):
    """The target frames (B, T, ...) of a clip (B, T + 2 * CONTEXT, ...) with context."""
    return clip[:, CONTEXT:clip.shape[1] - CONTEXT]


def recurrent_inputs(frames, prev_restored):
    """The frames the network's recurrent input convolution reads, in the reference
    implementation's order: I_{t-2}, I_{t-1}, R_{t-1}, I_{t+1}, I_{t+2}.

    Args:
        frames (sequence[Tensor]): the window's WINDOW frames, (N, 3, H, W) each.
        prev_restored (Tensor): R_{t-1}, the previous restored frame (N, 3, H, W).
    """
    return [frames[CENTER - 2], frames[CENTER - 1], prev_restored, frames[CENTER + 1],
            frames[CENTER + 2]]
