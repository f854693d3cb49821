_base_ = ['../mtu/mtu2_dvd.py']
# MC-head swap (Sec. 4.4): STFAN-style filter adaptive alignment instead of the correlation head;
# it gives no cost volume, so no motion loss and no flow to load
model = dict(backbone=dict(mc_head=dict(_delete_=True, type='FANMCHead')), motion_loss=None)
train_dataloader = dict(dataset=dict(with_flow=False))
