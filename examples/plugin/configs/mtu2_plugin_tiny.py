# A tiny MTU2 whose MC head and deblur loss come from the example plugin package (two units:
# the aligned feature feeds the second unit; MTU1 never uses its MC head's output). Run from the
# repository root with the plugin importable:
#   PYTHONPATH=examples/plugin python tools/train.py examples/plugin/configs/mtu2_plugin_tiny.py
_base_ = [
    '../../../configs/_base_/models/mtu.py', '../../../configs/_base_/datasets/dvd_folder.py',
    '../../../configs/_base_/schedules/mtu_schedule.py',
    '../../../configs/_base_/default_runtime.py'
]
custom_imports = dict(imports=['mtu_plugin_example'], allow_failed_imports=False)
model = dict(
    backbone=dict(num_units=2, channels=8, num_blocks=1,
                  mc_head=dict(_delete_=True, type='GlobalShiftMCHead', max_displacement=4)),
    deblur_loss=dict(pixel_loss=dict(_delete_=True, type='CharbonnierLoss', eps=1e-3)),
    motion_loss=None)  # the global-shift head has no cost volume to supervise
train_dataloader = dict(dataset=dict(with_flow=False))
