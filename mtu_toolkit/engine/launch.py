"""What tools/train.py and tools/test.py set up around mmengine's Runner."""
import ctypes
import ctypes.util
import gc
import importlib.util
import os
import signal
import sys

import torch
import torch.distributed as dist
from mmengine.model import is_model_wrapper

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


def stop_with_launcher(launcher):
    """Under torchrun (``launcher='pytorch'``, Linux), get SIGTERM when the launcher dies.

    torchrun starts each worker in a session of its own, so when the launcher is killed without
    forwarding a signal (``kill -9``, the OOM killer) the workers would be re-parented and keep
    training and writing checkpoints. ``PR_SET_PDEATHSIG`` has the kernel send SIGTERM instead,
    which the tools end like Ctrl-C (one line naming the last complete checkpoint). A launcher
    already gone before the call (the worker re-parented) is treated the same way.

    Returns:
        bool: whether the guard is set (False off Linux or without the pytorch launcher).
    """
    if launcher != 'pytorch' or not sys.platform.startswith('linux'):
        return False
    launcher_pid = os.getppid()
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    pr_set_pdeathsig = 1
    if libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) != 0:
        return False
    # a launcher that died before the prctl sends nothing: this worker was re-parented already
    if launcher_pid == 1 or os.getppid() != launcher_pid:
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def finish_distributed(runner=None):
    """Destroy the process group after a run that ended normally.

    Without it the gloo worker threads outlive the interpreter's finalisation and a rank can
    abort at exit ("terminate called without an active exception", SIGABRT) after all its work
    succeeded, which torchrun then reports as a failed job. Destroying the group ends those
    threads only when nothing else holds it: the Runner's DistributedDataParallel wrapper
    does, so with ``runner`` the wrapper is replaced by the model it wraps (``runner.model``
    stays usable) before the group is destroyed. Not called on errors: destroying while other
    ranks still sit in a collective would hang them instead of letting torchrun tear the job
    down.

    Args:
        runner (mmengine.runner.Runner, optional): the run's Runner.
    """
    if dist.is_available() and dist.is_initialized():
        # every rank done first: rank 0 may still be writing the last (best) checkpoint while
        # another rank, already finished, tears the group down under it (seen once in 15 runs
        # of two gloo processes: that rank aborted and torchrun stopped rank 0 mid-save)
        dist.barrier()
        if runner is not None and is_model_wrapper(runner.model):
            runner.model = runner.model.module
        # the wrapper sits in reference cycles (hooks, loops): freed now, not at exit, so the
        # group's last reference goes with destroy_process_group and its threads are joined
        # while the interpreter is whole
        gc.collect()
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


def add_runner_arguments(parser, example):
    """The options tools/train.py and tools/test.py share: ``--cfg-options`` (``example`` in its
    help), ``--launcher``, ``--local-rank`` (torch.distributed.launch) and ``--debug``."""
    from .config_loader import add_cfg_options_argument, add_debug_argument
    add_cfg_options_argument(parser, example)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher (pytorch = torchrun)')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    add_debug_argument(parser)


def runner_config(args):
    """The config of ``args.config`` with ``args.cfg_options``, and its ``work_dir``:
    ``args.work_dir``, else the config's, else ``./work_dirs/<config name>``. Sets LOCAL_RANK
    for mmengine from ``--local-rank`` (torch.distributed.launch passes it)."""
    from .config_loader import load_config
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(args.config, args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = os.path.join('./work_dirs',
                                    os.path.splitext(os.path.basename(args.config))[0])
    return cfg


def world_size(launcher):
    """Processes the launcher starts (1 without one): torchrun's WORLD_SIZE, Slurm's
    SLURM_NTASKS, MPI's OMPI_COMM_WORLD_SIZE."""
    if launcher == 'none':
        return 1
    for name in ('WORLD_SIZE', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
        if os.environ.get(name):
            return int(os.environ[name])
    return 1


def split_total_batch(cfg, launcher):
    """The configs give ``train_dataloader.batch_size`` as the TOTAL batch of a training step
    (the paper's 8 = 1 per GPU x 8 GPUs); mmengine's loaders take it per process. Divide it
    evenly over the processes (an error naming both numbers when it does not divide).

    Returns:
        tuple: ``(total, per_process, processes)``.
    """
    from .config_loader import ConfigError
    loader = cfg.get('train_dataloader')
    if not loader or 'batch_size' not in loader:
        return None
    total, processes = loader['batch_size'], world_size(launcher)
    if total % processes:
        raise ConfigError(f'train_dataloader.batch_size={total} is the total batch and must '
                          f'divide by the {processes} processes (set it to a multiple)')
    loader['batch_size'] = total // processes
    return total, total // processes, processes


def optim_wrappers(cfg):
    """``{name: wrapper config}`` of ``cfg.optim_wrapper``: the two-optimiser recipe's
    (``deblur``, ``motion``) or ``{'': the one wrapper}``."""
    optim = cfg.get('optim_wrapper') or {}
    if 'constructor' in optim:
        return {k: v for k, v in optim.items() if k not in ('constructor', 'paramwise_cfg')}
    return {'': optim}


def _metric_names(evaluator, displacement=True):
    """The names the metrics of an evaluator config give (prefixed as mmengine prefixes them),
    or None when one of them does not say (a metric of another package); without
    ``displacement`` (an MC head that gives none), those of the metrics that need one are not
    given."""
    from ..registry import METRICS
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        evaluator = evaluator['metrics']
    names = []
    for metric in evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]:
        try:  # (an unknown type is the Runner's error to give, when it builds the metric)
            cls = METRICS.get(metric.get('type')) if isinstance(metric, dict) else None
        except KeyError:
            return None
        keys = getattr(cls, 'metric_keys', None)
        if keys is None:
            return None
        if getattr(cls, 'needs_displacement', False) and not displacement:
            continue
        prefix = metric.get('prefix', cls.default_prefix)
        names += [f'{prefix}/{k}' if prefix else k for k in keys]
    return names


def check_training_settings(cfg):
    """Refuse, before the Runner is built, settings that mmengine would take and then fail on
    (or ignore) hours into a run, in one line naming the key.

    - ``accumulative_counts`` (gradient accumulation): the restorer steps its optimiser(s)
      once per frame of a clip, so mmengine's count of steps is not iterations (with the two
      optimisers it had no effect, with one it failed after a few iterations);
    - ``train_cfg.val_interval``: a positive number of iterations (0 divided by zero after the
      first iteration; no validation is ``val_cfg=None``);
    - a ``param_scheduler`` given per optimiser (a dict of lists): one entry per optimiser of
      the two-optimiser recipe, by its name;
    - ``default_hooks.checkpoint.save_best``: a metric the validation gives (a misspelt one
      failed at the first validation);
    - ``model.motion_loss`` (set, or the model's default) with an MC head that gives a cost
      volume and a training set that gives no flow (the loss's target): a KeyError in the
      first iteration;
    - a ``param_scheduler`` entry with ``convert_to_iter_based`` but ``by_epoch=False`` (an
      AssertionError once the Runner was built), or epoch-based (``by_epoch=True``, mmengine's
      default) without it in an iteration-based loop, where it never steps.
    """
    from .config_loader import ConfigError
    wrappers = optim_wrappers(cfg)
    if '' not in wrappers \
            and str(cfg.optim_wrapper.get('constructor')).rpartition('.')[2] == \
            'MTUOptimWrapperConstructor':
        from .optim_wrappers import check_wrapper_entries
        check_wrapper_entries(wrappers)  # (before the checks below read the entries)
    for name, wrapper in wrappers.items():
        counts = wrapper.get('accumulative_counts', 1) if isinstance(wrapper, dict) else 1
        if counts != 1:
            key = f'optim_wrapper.{name}.' if name else 'optim_wrapper.'
            raise ConfigError(f'{key}accumulative_counts={counts}: gradient accumulation is not '
                              'supported (the restorer steps its optimisers once per frame of '
                              'a clip); for a larger batch raise train_dataloader.batch_size')
    interval = (cfg.get('train_cfg') or {}).get('val_interval', 1)
    validates = cfg.get('val_cfg') is not None and cfg.get('val_dataloader') is not None
    if validates and (not isinstance(interval, int) or isinstance(interval, bool)
                      or interval < 1):
        raise ConfigError(f'train_cfg.val_interval={interval!r}: must be a positive number of '
                          'iterations (to train without validation, set val_cfg=None)')
    scheduler = cfg.get('param_scheduler')
    if isinstance(scheduler, dict) and 'type' not in scheduler and '' not in wrappers:
        if set(scheduler) != set(wrappers):
            raise ConfigError(f'param_scheduler: a schedule per optimiser needs one entry for '
                              f'each of {", ".join(sorted(wrappers))}, got '
                              f'{", ".join(sorted(scheduler)) or "none"} (or give one list for '
                              'both)')
    _check_schedulers(scheduler, cfg.get('train_cfg') or {})
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    best = checkpoint.get('save_best') if isinstance(checkpoint, dict) else None
    displacement = _gives_displacement(cfg.get('model'))
    names = (_metric_names(cfg.get('val_evaluator') or [], displacement)
             if best and cfg.get('val_cfg') is not None else None)
    if names is not None:
        for key in best if isinstance(best, (list, tuple)) else [best]:
            if key != 'auto' and key not in names:
                headless = ('' if displacement else
                            f' (the MC head {_head_class(cfg.get("model")).__name__} gives no '
                            'displacement, so no alignment scores)')
                raise ConfigError(f'default_hooks.checkpoint.save_best={key!r}: the validation '
                                  f'gives {", ".join(names)}{headless} (or use \'auto\')')
    loader = cfg.get('train_dataloader') or {}
    if _trains_motion_loss(cfg.get('model')) and isinstance(loader, dict):
        for key in _flowless_datasets(loader.get('dataset'), 'train_dataloader.dataset'):
            said = '' if 'motion_loss' in cfg.model else " (the model's default)"
            raise ConfigError(f'model.motion_loss is on{said} but {key}.with_flow is off: the '
                              f'motion loss trains on the flow (set {key}.with_flow=True, or '
                              'model.motion_loss=None)')


def map_schedulers(scheduler, fn, key='param_scheduler'):
    """``scheduler`` (a ``param_scheduler`` config: one dict, a list, or a dict of either per
    optimiser) rebuilt with ``fn(key, entry)`` in place of each scheduler dict ``entry``, ``key``
    naming its place (``param_scheduler.motion[1]``); lists come back as lists, other values
    as they are."""
    if isinstance(scheduler, dict) and 'type' in scheduler:
        return fn(key, scheduler)
    if isinstance(scheduler, (list, tuple)):
        return [map_schedulers(entry, fn, f'{key}[{i}]') for i, entry in enumerate(scheduler)]
    if isinstance(scheduler, dict):
        return {name: map_schedulers(entry, fn, f'{key}.{name}')
                for name, entry in scheduler.items()}
    return scheduler


def _check_schedulers(scheduler, train_cfg):
    """Refuse a scheduler mmengine would fail on once the Runner is built or never step (see
    :func:`check_training_settings`)."""
    from .config_loader import ConfigError
    iterations = 'max_iters' in train_cfg or 'IterBased' in str(train_cfg.get('type'))

    def check(key, entry):
        by_epoch = entry.get('by_epoch', True)  # (mmengine's schedulers' default)
        converted = entry.get('convert_to_iter_based', False)
        if converted and not by_epoch:
            raise ConfigError(f'{key}.convert_to_iter_based=True: only an epoch-based schedule '
                              '(by_epoch=True) is converted to iterations; this one counts '
                              'iterations already (drop convert_to_iter_based)')
        if iterations and by_epoch and not converted:
            raise ConfigError(f'{key}.by_epoch=True: the training loop counts iterations '
                              '(train_cfg.max_iters), where an epoch-based schedule never '
                              'steps; give it in iterations with by_epoch=False, or add '
                              'convert_to_iter_based=True')
        return entry

    map_schedulers(scheduler, check)


def _argument(cfg, name):
    """``cfg[name]``, else the default of that argument of the registered ``cfg['type']``
    (None where neither is known)."""
    from ..models.network_settings import default_arguments, registered_class
    if not isinstance(cfg, dict):
        return None
    if name in cfg:
        return cfg[name]
    cls = registered_class(cfg.get('type'))
    return default_arguments(cls).get(name) if cls is not None else None


def _head_class(model):
    """The registered class of the config's MC head (the backbone's default where the config
    gives none), or None."""
    from ..models.network_settings import registered_class
    head = _argument(_argument(model, 'backbone'), 'mc_head')
    return registered_class(head.get('type')) if isinstance(head, dict) else None


def _gives_displacement(model):
    """Whether the config's MC head gives a displacement (True where it cannot be told)."""
    from ..models.mc_heads import BaseMCHead
    cls = _head_class(model)
    if not isinstance(cls, type) or not issubclass(cls, BaseMCHead):
        return True
    return cls.displacement is not BaseMCHead.displacement


def _trains_motion_loss(model):
    """Whether the config's model trains a motion loss on cost volumes (the loss set, or the
    restorer's default, and an MC head that gives them)."""
    return (bool(_argument(model, 'motion_loss'))
            and getattr(_head_class(model), 'gives_cost_volume', False))


def _flowless_datasets(dataset, key):
    """Keys of the datasets in ``dataset`` (a config dict; wrappers' ``dataset`` /
    ``datasets`` looked into) that take ``with_flow`` and leave it off."""
    import inspect

    from ..registry import DATASETS
    if not isinstance(dataset, dict):
        return
    inner = dataset.get('dataset')
    if isinstance(inner, dict):
        yield from _flowless_datasets(inner, f'{key}.dataset')
        return
    if isinstance(dataset.get('datasets'), (list, tuple)):
        for i, item in enumerate(dataset['datasets']):
            yield from _flowless_datasets(item, f'{key}.datasets.{i}')
        return
    kind = dataset.get('type')
    cls = DATASETS.get(kind) if isinstance(kind, str) else kind
    if not inspect.isclass(cls):
        return
    param = inspect.signature(cls.__init__).parameters.get('with_flow')
    if param is not None and not dataset.get('with_flow', param.default):
        yield key


def use_mixed_precision(cfg, force=False):
    """Make the config's optimiser wrapper(s) mixed precision for this machine.

    With ``force`` (``tools/train.py --amp``) every wrapper becomes mixed precision; otherwise
    only the wrappers a config asks for (the "hp" configs' ``AmpOptimWrapper``) are adapted.
    On a GPU that is float16 autocast with dynamic loss scaling (``AmpOptimWrapper``); without
    one, bfloat16 autocast (``BF16AutocastOptimWrapper``: mmengine's ``AmpOptimWrapper`` needs
    CUDA). Works for one wrapper and for the two-optimiser dict.

    Returns:
        list[str]: the wrapper types now in use, one per wrapper.
    """
    from .config_loader import ConfigError
    wrappers = list(optim_wrappers(cfg).values())
    plain = ('OptimWrapper', 'AmpOptimWrapper', 'BF16AutocastOptimWrapper')
    for wrapper in wrappers:
        kind = wrapper.get('type', 'OptimWrapper')
        if kind not in plain:
            raise ConfigError(f'optim_wrapper type {kind!r} is not one of {plain}; set the '
                              'mixed-precision wrapper in the config instead of --amp')
        if not force and kind == 'OptimWrapper':
            continue
        if torch.cuda.is_available():
            wrapper.update(type='AmpOptimWrapper')
            wrapper.setdefault('loss_scale', 'dynamic')
        else:
            wrapper.pop('loss_scale', None)
            wrapper.update(type='BF16AutocastOptimWrapper')
    return [w.get('type', 'OptimWrapper') for w in wrappers]


def prepare_runtime(cfg, launcher):
    """Weights-only checkpoint loading, process group on CPU, gloo backend, TensorBoard."""
    setup_safe_loading()
    stop_with_launcher(launcher)
    cfg.launcher = launcher
    if launcher != 'none' and not torch.cuda.is_available():
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    init_distributed(launcher)
    add_tensorboard(cfg)
    return cfg
