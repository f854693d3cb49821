_base_ = ['../mtu/mtu2_dvd.py']
# Table 1, row 2 and Table 2, row 1: no motion compensation module (previous feature passed on
# unaligned), no motion loss
model = dict(backbone=dict(mc_head=dict(_delete_=True, type='NoneMCHead')), motion_loss=None)
train_dataloader = dict(dataset=dict(with_flow=False))
