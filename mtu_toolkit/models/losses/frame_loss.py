"""The interface of the restorer's loss terms.

The restorer runs the network frame by frame and hands every loss term the frame's outputs and
targets; each term takes what it needs::

    value = term.frame_term(outputs, targets)    # a scalar tensor, or None (nothing to learn)

``outputs`` is the backbone's dict: ``out`` (N, 3, H, W) the restored frame, ``aux_outs`` the
auxiliary restored frames of units 1..N-1 (list of (N, 3, H, W)), ``mc`` the MC heads' dicts of
the matching units (``cost_volume`` (N, (2D+1)^2, H/4, W/4) logits and ``max_displacement``
for the correlation head). ``targets``: ``gt`` (N, 3, H, W) the sharp frame, ``flow``
(N, 2, H, W) the sharp frames' flow t -> t-1 in pixels (when the dataset gives it) and
``first_frame`` (bool: the clip's first frame, which the network matches with itself).

A new term is one registered class and one config entry (``model.losses``), not an edit of
the restorer. ``optim_group`` says which optimiser of the two-optimiser recipe its gradient
feeds (``'deblur'`` or ``'motion'``, see :class:`~mtu_toolkit.engine.MTUOptimWrapperConstructor`).
"""
import torch.nn as nn


class FrameLoss(nn.Module):
    """Base class of the restorer's loss terms (see the module docstring)."""

    #: the optimiser (of a two-optimiser recipe) that this term's gradient feeds
    optim_group = 'deblur'

    def frame_term(self, outputs, targets):
        """The term's value for one frame (a scalar tensor), or None."""
        raise NotImplementedError
