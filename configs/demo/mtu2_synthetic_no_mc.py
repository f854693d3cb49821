# The same model without motion compensation (and so without the motion loss).
_base_ = ['./mtu2_synthetic.py']
model = dict(backbone=dict(mc_head=dict(_delete_=True, type='NoneMCHead')), motion_loss=None)
train_dataloader = dict(dataset=dict(with_flow=False))
