_base_ = ['../mtu/mtu2_dvd.py']
# Table 1, row 1: neither residual learning nor the MC module (the previous feature passed on
# unaligned) nor the motion loss
model = dict(backbone=dict(residual=False, mc_head=dict(_delete_=True, type='NoneMCHead')),
             motion_loss=None)
train_dataloader = dict(dataset=dict(with_flow=False))
