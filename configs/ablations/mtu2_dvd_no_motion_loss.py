_base_ = ['../mtu/mtu2_dvd.py']
# Table 2: MC module without the motion loss
model = dict(motion_loss=None)
train_dataloader = dict(dataset=dict(with_flow=False))
