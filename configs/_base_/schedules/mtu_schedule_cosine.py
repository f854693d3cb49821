# Variant of the reference implementation: cosine decay from 1e-4 to 1e-6 (the motion
# optimiser from 1e-6 to 1e-8) over the same 1,300,000 per-frame steps = 100,000 iterations of
# 13-frame clips.
_base_ = ['./mtu_schedule.py']
param_scheduler = dict(
    _delete_=True,
    deblur=dict(type='CosineAnnealingLR', by_epoch=False, T_max=100000, eta_min=1e-6),
    motion=dict(type='CosineAnnealingLR', by_epoch=False, T_max=100000, eta_min=1e-8))
