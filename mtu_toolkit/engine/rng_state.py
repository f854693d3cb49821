"""Snapshots of every random generator a training run draws from (python, numpy, torch, CUDA).

Stored in checkpoints as plain tensors and ints (no numpy objects), so that a resumed run draws
the same random numbers as an uninterrupted one.
"""
import random

import numpy as np
import torch


def get_rng_state():
    """dict of the current states: ``python``, ``numpy``, ``torch`` and (if available) ``cuda``."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(
        python=dict(version=version, internal=torch.tensor(internal, dtype=torch.int64),
                    gauss=gauss),
        numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                   has_gauss=int(has_gauss), cached_gaussian=float(cached)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore a :func:`get_rng_state` snapshot (CUDA only if present and available)."""
    py = state['python']
    random.setstate((py['version'], tuple(int(v) for v in py['internal'].tolist()), py['gauss']))
    npy = state['numpy']
    np.random.set_state((npy['kind'], npy['keys'].numpy().astype(np.uint32), npy['pos'],
                         npy['has_gauss'], npy['cached_gaussian']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        cuda_states = state['cuda']
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
