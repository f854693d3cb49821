_base_ = [
    '../_base_/models/mtu.py', '../_base_/datasets/dvd.py',
    '../_base_/schedules/mtu_schedule_cosine.py', '../_base_/default_runtime.py'
]
# the reference trains this one with cosine annealing (script_train: -LRS CA), the others with
# step decay
model = dict(backbone=dict(num_units=10))
