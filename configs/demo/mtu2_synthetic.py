# The embedded default (tools/demo.py): MTU2 on synthetic blur from real photographs, a recipe
# sized for a few minutes of 2-core CPU training, documented as different from the paper's
# (docs/recipe.md): 64x64 crops of 6-frame clips drawn at random, batch 4, one Adam for both
# losses at lr 1e-3 after a short warm-up with cosine decay, L1 deblurring loss, He-initialised
# U-Nets starting at the identity.
_base_ = [
    '../_base_/models/mtu.py', '../_base_/datasets/synthetic.py',
    '../_base_/schedules/mtu_schedule.py', '../_base_/default_runtime.py'
]
# the demo's camera pans horizontally: no 90-degree rotations, which would train vertical blur
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False, dataset=dict(
    num_frames=6, sampling='random', clamp_context='sequence',
    pipeline=[dict(type='ClipRandomCrop', size=64), dict(type='ClipRandomFlip', prob=0.5)]))
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='Adam', lr=1e-3, betas=(0.9, 0.999)),
                     clip_grad=dict(max_norm=1.0))
# PyTorch's default init shrinks the signal through the U-Nets and learns slowly; the residual
# output starts at zero so that the untrained network is the identity
model = dict(backbone=dict(weight_init='kaiming', zero_init_output=True),
             deblur_loss=dict(pixel_loss=dict(_delete_=True, type='L1Loss')),
             # one optimiser for both losses: the cross-entropy starts near log(441) = 6 nats
             # and would outweigh the deblurring loss for all of a short training
             motion_loss=dict(loss_weight=0.001))
# a linear warm-up lets Adam reach 1e-3 without killing the freshly initialised ReLUs (straight
# at 1e-3 the network collapsed to the identity; after a 30-iteration warm-up the MC model still
# did on an Intel Xeon, within its first 10 iterations); then cosine decay to the end
param_scheduler = [
    dict(type='LinearLR', by_epoch=False, start_factor=0.01, begin=0, end=150),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=150, end=700, eta_min=1e-5)]
train_cfg = dict(max_iters=700, val_interval=100000)
default_hooks = dict(logger=dict(interval=50),
                     checkpoint=dict(interval=50, max_keep_ckpts=1, save_best=None))
custom_hooks = [dict(type='ProgressBarHook')]
