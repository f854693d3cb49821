"""The paper's recipe, pinned: every number the configs train with, next to where it comes
from (paper section / the reference implementation's file; docs/recipe.md has the table)."""
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: variant -> (units, channels, residual blocks): paper Tables 3, 4, 7 / configs/config_MTU*.py
VARIANTS = {'mtu1': (1, 26, 8), 'mtu2': (2, 26, 8), 'mtu4': (4, 26, 8), 'mtu10': (10, 26, 8),
            'mtu10_l': (10, 48, 6)}
#: the reference trains these two with cosine annealing (script_train/*.sh: -LRS CA)
COSINE = {('mtu10', 'dvd'), ('mtu10_l', 'gopro')}


def load(variant, data):
    return Config.fromfile(osp.join(ROOT, 'configs', 'mtu', f'{variant}_{data}.py'))


@pytest.mark.parametrize('data', ['dvd', 'gopro', 'reds'])
@pytest.mark.parametrize('variant', list(VARIANTS))
def test_paper_recipe(variant, data):
    cfg = load(variant, data)
    backbone = cfg.model.backbone
    # architecture (paper Sec. 3, Tables 3, 4, 7)
    assert (backbone.num_units, backbone.channels, backbone.num_blocks) == VARIANTS[variant]
    # matching: D = 10, 5x5 box smoothing of the volume (config_MTU*.py max_displacement;
    # models/archs/MTU.py AvgPool2d(5)), in the first unit only (skip_corr_index: App. A.3)
    assert backbone.mc_head == dict(type='CorrelationMCHead', max_displacement=10, smooth=5)
    assert not backbone.match_every_unit and backbone.structure_injection
    assert backbone.motion_layer and backbone.residual
    # init: every conv from N(0, 0.03), biases 0 (trainer DeblurNet.weights_init, config.win)
    assert (backbone.weight_init, backbone.init_std) == ('normal', 0.03)
    # deblurring loss: L1 + MSE; auxiliary outputs 0.1 x their mean (aux_lambda; _get_results)
    loss = cfg.model.deblur_loss
    assert [p['type'] for p in loss.pixel_loss] == ['L1Loss', 'MSELoss']
    assert (loss.final_weight, loss.aux_weight, loss.aux_reduction) == (1.0, 0.1, 'mean')
    # motion loss: cross-entropy, weight 1 (the 0.01 is the lr ratio: distill_lambda)
    assert cfg.model.motion_loss == dict(type='MotionCrossEntropyLoss', loss_weight=1.0)
    # two Adam optimisers: lr 1e-4 and 1e-4 x 0.01; betas (0.9, 0.999), eps 1e-8; each
    # gradient clipped to 1.0 (config.py lr_init, beta1, gc; trainer _set_optim, _update)
    wrapper = cfg.optim_wrapper
    assert wrapper.constructor == 'MTUOptimWrapperConstructor'
    for name, lr in (('deblur', 1e-4), ('motion', 1e-6)):
        optimizer = wrapper[name].optimizer
        assert (optimizer.type, optimizer.lr, tuple(optimizer.betas), optimizer.eps) == \
            ('Adam', pytest.approx(lr), (0.9, 0.999), 1e-8)
        assert wrapper[name].clip_grad == dict(max_norm=1.0)
    # 1,300K per-frame steps = 100,000 iterations of 13-frame clips (config_MTU*.py total_itr)
    assert cfg.train_cfg.max_iters == 100000
    scheduler = cfg.param_scheduler
    if (variant, data) in COSINE:  # cosine to lr_min 1e-6 (1e-8 for the motion optimiser)
        assert scheduler.deblur.type == scheduler.motion.type == 'CosineAnnealingLR'
        assert (scheduler.deblur.eta_min, scheduler.motion.eta_min) == (1e-6, 1e-8)
        assert scheduler.deblur.T_max == 100000
    else:  # x0.25 at 1,000K and 1,250K steps (decay_period, decay_rate)
        assert scheduler.type == 'MultiStepLR' and scheduler.gamma == 0.25
        assert scheduler.milestones == [round(1_000_000 / 13), round(1_250_000 / 13)]
    # data: 13-frame clips on a grid, left context clamped, 256 crops, batch 8 in total
    loader = cfg.train_dataloader
    dataset = loader.dataset
    assert (dataset.num_frames, dataset.sampling, dataset.clamp_context) == (13, 'grid', 'clip')
    assert loader.batch_size == 8 and dataset.with_flow
    pipeline = {t['type']: t for t in dataset.pipeline}
    assert pipeline['ClipRandomCrop']['size'] == 256
    # augmentation (data_loader/datasets.py __getitem__, utils.py read_frame)
    for name in ('ClipRandomRot90', 'ClipRandomFlip'):
        assert pipeline[name]['prob'] == 0.5
        assert tuple(pipeline[name]['choice_probs']) == (0.3, 0.3, 0.4)
    noise = pipeline['ClipGaussianNoise']
    assert (noise['sigma'], noise['prob'], tuple(noise['keys']), noise['per_frame'],
            noise['clip']) == (1e-4, 0.5, ('inputs', 'gt'), True, True)
    # the checkpoint kept: the best validation PSNR (run.py ckpt_manager score)
    assert cfg.default_hooks.checkpoint.save_best == 'PSNR'


@pytest.mark.parametrize('data', ['dvd', 'gopro', 'reds'])
def test_hp_is_mtu2_trained_with_amp_and_run_in_half(data):
    cfg = load('mtu2_hp', data)
    assert cfg.model.infer_dtype == 'float16'
    assert cfg.optim_wrapper.deblur.type == cfg.optim_wrapper.motion.type == 'AmpOptimWrapper'


def test_total_batch_is_split_over_processes(monkeypatch):
    from mtu_toolkit.engine.config_loader import ConfigError
    from mtu_toolkit.engine.launch import split_total_batch
    cfg = load('mtu2', 'dvd')
    assert split_total_batch(cfg, 'none') == (8, 8, 1)
    cfg = load('mtu2', 'dvd')
    monkeypatch.setenv('WORLD_SIZE', '8')  # the reference: 1 clip per GPU x 8 GPUs
    assert split_total_batch(cfg, 'pytorch') == (8, 1, 8)
    assert cfg.train_dataloader.batch_size == 1
    monkeypatch.setenv('WORLD_SIZE', '3')
    with pytest.raises(ConfigError, match='must divide by the 3 processes'):
        split_total_batch(load('mtu2', 'dvd'), 'pytorch')


def test_mixed_precision_for_this_machine():
    import torch

    from mtu_toolkit.engine.launch import use_mixed_precision
    amp = 'AmpOptimWrapper' if torch.cuda.is_available() else 'BF16AutocastOptimWrapper'
    cfg = load('mtu2_hp', 'dvd')
    assert use_mixed_precision(cfg) == [amp, amp]  # both optimisers of the hp recipe
    cfg = load('mtu2', 'dvd')
    assert use_mixed_precision(cfg) == ['OptimWrapper', 'OptimWrapper']  # as configured
    assert use_mixed_precision(cfg, force=True) == [amp, amp]  # tools/train.py --amp


@pytest.mark.parametrize('options, message', [
    ({'+optim_wrapper.deblur.accumulative_counts': 4},
     r'^optim_wrapper\.deblur\.accumulative_counts=4: gradient accumulation is not supported'),
    ({'train_cfg.val_interval': 0},
     r"^train_cfg\.val_interval=0: must be a positive number of iterations \(to train without "
     r'validation, set val_cfg=None\)$'),
    ({'_delete_param_scheduler': dict(deblurr=[dict(type='ConstantLR', factor=1.0)],
                                      motion=[dict(type='ConstantLR', factor=1.0)])},
     r'^param_scheduler: a schedule per optimiser needs one entry for each of deblur, motion, '
     r'got deblurr, motion'),
    ({'default_hooks.checkpoint.save_best': 'psnr'},
     r"^default_hooks\.checkpoint\.save_best='psnr': the validation gives PSNR, SSIM "),
    ({'default_hooks.checkpoint.save_best': ['PSNR', 'PNSR']}, r"save_best='PNSR'"),
    ({'train_dataloader.dataset.with_flow': False},
     r'^model\.motion_loss is on but train_dataloader\.dataset\.with_flow is off'),
    ({'+param_scheduler.convert_to_iter_based': True},
     r'^param_scheduler\.convert_to_iter_based=True: only an epoch-based schedule '
     r'\(by_epoch=True\) is converted'),
    ({'param_scheduler.by_epoch': True},
     r'^param_scheduler\.by_epoch=True: the training loop counts iterations '
     r'\(train_cfg\.max_iters\), where an epoch-based schedule never steps'),
    ({'_delete_param_scheduler': dict(deblur=[dict(type='ConstantLR', factor=1.0)],
                                      motion=[dict(type='ConstantLR', factor=1.0,
                                                   by_epoch=False)])},
     r'^param_scheduler\.deblur\[0\]\.by_epoch=True: '),
    ({'_delete_param_scheduler': dict(deblur=[dict(type='ConstantLR', factor=1.0,
                                                   by_epoch=False)],
                                      motion=[dict(type='ConstantLR', factor=1.0,
                                                   by_epoch=False),
                                              dict(type='LinearLR', by_epoch=False,
                                                   convert_to_iter_based=True)])},
     r'^param_scheduler\.motion\[1\]\.convert_to_iter_based=True: only an epoch-based '),
])
def test_training_settings_mmengine_would_fail_on_late_are_refused(options, message):
    """Each of these trained until the first checkpoint or validation (hours in) and failed
    there, or was silently ignored (gradient accumulation with the two optimisers)."""
    from mtu_toolkit.engine.config_loader import ConfigError, apply_cfg_options, user_error
    from mtu_toolkit.engine.launch import check_training_settings
    cfg = load('mtu2', 'dvd')
    check_training_settings(cfg)  # the configs as shipped pass
    if '_delete_param_scheduler' in options:  # a whole new value, as a config file gives it
        cfg.param_scheduler = options.pop('_delete_param_scheduler')
    apply_cfg_options(cfg, options)
    with pytest.raises(ConfigError, match=message) as info:
        check_training_settings(cfg)
    assert user_error(info.value)[1] == 2


def test_save_best_on_alignment_needs_a_head_that_gives_a_displacement():
    from mtu_toolkit.engine.config_loader import ConfigError
    from mtu_toolkit.engine.launch import check_training_settings
    cfg = load('mtu2', 'dvd')
    cfg.val_evaluator = [cfg.val_evaluator, dict(type='MCAlignmentMetric')]
    cfg.default_hooks.checkpoint.save_best = 'align_PSNR'
    check_training_settings(cfg)  # the correlation head
    cfg.model.backbone.mc_head = dict(type='FANMCHead')
    cfg.model.motion_loss = None
    with pytest.raises(ConfigError, match=r"save_best='align_PSNR': the validation gives PSNR, "
                                          r'SSIM \(the MC head FANMCHead gives no displacement'):
        check_training_settings(cfg)


def test_the_motion_loss_check_follows_the_head_and_the_defaults():
    from mtu_toolkit.engine.config_loader import ConfigError
    from mtu_toolkit.engine.launch import check_training_settings
    cfg = load('mtu2', 'dvd')
    cfg.train_dataloader.dataset.with_flow = False
    # a head without cost volumes: the motion loss has nothing to train (no flow read)
    cfg.model.backbone.mc_head = dict(type='FANMCHead')
    check_training_settings(cfg)
    # the restorer's default motion loss, the correlation head: the flow is needed
    cfg.model.backbone.mc_head = dict(type='correlation')
    del cfg.model['motion_loss']
    with pytest.raises(ConfigError, match=r"^model\.motion_loss is on \(the model's default\) "
                                          r'but train_dataloader\.dataset\.with_flow is off'):
        check_training_settings(cfg)
    cfg.model.motion_loss = None
    check_training_settings(cfg)


def test_training_settings_that_work_pass():
    from mtu_toolkit.engine.launch import check_training_settings
    cfg = load('mtu10', 'dvd')  # the per-optimiser cosine schedule
    assert set(cfg.param_scheduler) == {'deblur', 'motion'}
    check_training_settings(cfg)
    cfg.default_hooks.checkpoint.save_best = ['PSNR', 'SSIM']
    cfg.val_evaluator = [cfg.val_evaluator, dict(type='MCAlignmentMetric', prefix='mc')]
    check_training_settings(cfg)
    cfg.default_hooks.checkpoint.save_best = 'mc/align_PSNR'
    check_training_settings(cfg)
    cfg.val_evaluator.append(dict(type='SomeoneElsesMetric'))  # names it cannot know: not checked
    cfg.default_hooks.checkpoint.save_best = 'their_score'
    check_training_settings(cfg)
    cfg.train_cfg.val_interval, cfg.val_cfg = 0, None  # no validation: the interval is unused
    check_training_settings(cfg)


def test_map_schedulers_names_each_entry_and_keeps_the_shape():
    from mtu_toolkit.engine.launch import map_schedulers
    seen = []

    def tag(key, entry):
        seen.append(key)
        return dict(entry, seen=True)

    one = dict(type='ConstantLR')
    assert map_schedulers(one, tag) == dict(type='ConstantLR', seen=True)
    per_optimiser = dict(deblur=(one,), motion=[one, dict(type='LinearLR')])
    assert map_schedulers(per_optimiser, tag) == dict(
        deblur=[dict(one, seen=True)],
        motion=[dict(one, seen=True), dict(type='LinearLR', seen=True)])
    assert seen == ['param_scheduler', 'param_scheduler.deblur[0]', 'param_scheduler.motion[0]',
                    'param_scheduler.motion[1]']
    assert map_schedulers(None, tag) is None and len(seen) == 4
