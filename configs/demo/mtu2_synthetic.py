# The embedded default (tools/demo.py): MTU2 on synthetic blur from real photographs, a CPU-sized
# recipe (96x96 crops, 4-frame clips, batch 4, higher lr with cosine decay).
_base_ = [
    '../_base_/models/mtu.py', '../_base_/datasets/synthetic.py',
    '../_base_/schedules/mtu_schedule.py', '../_base_/default_runtime.py'
]
train_dataloader = dict(batch_size=4, dataset=dict(num_frames=4))
optim_wrapper = dict(optimizer=dict(lr=1e-3))
# start at the identity (residual learning): the short training only has to add detail
model = dict(backbone=dict(zero_init_output=True))
param_scheduler = dict(_delete_=True, type='CosineAnnealingLR', by_epoch=False, T_max=150,
                       eta_min=1e-5)
train_cfg = dict(max_iters=150, val_interval=100000)
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=50, max_keep_ckpts=1))
custom_hooks = [dict(type='ProgressBarHook')]
