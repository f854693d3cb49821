"""What tools/train.py and tools/test.py set up around mmengine's Runner."""
import importlib.util
import os

import torch
import torch.distributed as dist

from .checkpoint import setup_safe_loading


def init_distributed(launcher):
    """Start the process group for ``launcher='pytorch'`` (torchrun) when there is no GPU.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, which fails on a
    CPU-only machine; here the gloo group is created first and mmengine then finds it ready.
    With CUDA nothing is done (mmengine initialises NCCL itself).
    """
    if launcher == 'none' or torch.cuda.is_available() or dist.is_initialized():
        return
    if launcher != 'pytorch':
        raise ValueError(f"launcher {launcher!r} needs GPUs; on CPU use 'pytorch' (torchrun)")
    dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']),
                            world_size=int(os.environ['WORLD_SIZE']))


def finish_distributed():
    """Destroy the process group after a run that ended normally.

    Without it the gloo worker threads outlive the interpreter's finalisation and a rank can
    abort at exit ("terminate called without an active exception", SIGABRT) after all its work
    succeeded, which torchrun then reports as a failed job. Not called on errors: destroying
    while other ranks still sit in a collective would hang them instead of letting torchrun
    tear the job down.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def add_tensorboard(cfg):
    """Append ``TensorboardVisBackend`` to the visualizer when ``tensorboard`` is installed."""
    if importlib.util.find_spec('tensorboard') is None:
        return False
    vis = cfg.get('visualizer')
    if vis is None:
        return False
    backends = vis.setdefault('vis_backends', [])
    if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    return True


def prepare_runtime(cfg, launcher):
    """Weights-only checkpoint loading, process group on CPU, gloo backend, TensorBoard."""
    setup_safe_loading()
    cfg.launcher = launcher
    if launcher != 'none' and not torch.cuda.is_available():
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    init_distributed(launcher)
    add_tensorboard(cfg)
    return cfg
