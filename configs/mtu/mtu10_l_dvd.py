_base_ = [
    '../_base_/models/mtu.py', '../_base_/datasets/dvd.py',
    '../_base_/schedules/mtu_schedule.py', '../_base_/default_runtime.py'
]
# the large variant: 48 channels, 6 residual blocks per unit
model = dict(backbone=dict(num_units=10, channels=48, num_blocks=6))
