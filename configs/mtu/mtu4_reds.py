_base_ = [
    '../_base_/models/mtu.py', '../_base_/datasets/reds.py',
    '../_base_/schedules/mtu_schedule.py', '../_base_/default_runtime.py'
]
model = dict(backbone=dict(num_units=4))
