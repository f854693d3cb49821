_base_ = ['../mtu/mtu2_dvd.py']
# Tables 2, 8: neither the addition of the structural feature nor the motion layer
model = dict(backbone=dict(structure_injection=False, motion_layer=False))
