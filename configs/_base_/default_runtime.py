# Runtime shared by all MTU configs: hooks, logging, checkpoints, evaluation, distributed.
default_scope = 'mtu'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),  # logs `time` / `data_time` per iteration and the ETA
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # atomic saves, rng state for exact resume, weights-only loading; the best validation
    # PSNR is kept as best_PSNR_iter_<n>.pth (the reference picks its checkpoint so)
    checkpoint=dict(type='AtomicCheckpointHook', interval=5000, by_epoch=False,
                    max_keep_ckpts=3, save_best='PSNR', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = [dict(type='VideoVisualizationHook', max_sequences=2)]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo when there is no GPU
    dist_cfg=dict(backend='nccl'))
# DDP broadcasts the weights at the start; the restorer averages the gradients itself after
# every per-frame backward (one or two per frame). The scope prefix is needed: mmengine's
# Runner looks the type up in its root registry.
model_wrapper_cfg = dict(type='mtu.MTUDistributedDataParallel', broadcast_buffers=False)

# tools/train.py adds TensorboardVisBackend when tensorboard is installed
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
log_level = 'INFO'

val_evaluator = dict(type='VideoRestorationMetric')
test_evaluator = val_evaluator

randomness = dict(seed=0, deterministic=False)
load_from = None
resume = False
