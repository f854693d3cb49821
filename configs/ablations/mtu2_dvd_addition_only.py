_base_ = ['../mtu/mtu2_dvd.py']
# Table 8, row 3: addition of the structural feature without the motion layer
model = dict(backbone=dict(motion_layer=False))
