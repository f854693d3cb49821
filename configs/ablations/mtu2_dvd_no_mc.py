_base_ = ['../mtu/mtu2_dvd.py']
# Tables 1, 2: no motion compensation module (previous feature passed on unaligned), no motion loss
model = dict(backbone=dict(mc_head=dict(_delete_=True, type='NoneMCHead')), motion_loss=None)
train_dataloader = dict(dataset=dict(with_flow=False))
