_base_ = ['../mtu/mtu2_dvd.py']
# Table 2, row 2: the MC module without the motion loss, and without structure injection (the
# matching on the detail network's own features; a motion layer would get no loss to train it)
model = dict(backbone=dict(structure_injection=False, motion_layer=False), motion_loss=None)
train_dataloader = dict(dataset=dict(with_flow=False))
