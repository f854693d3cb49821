_base_ = ['../mtu/mtu2_dvd.py']
# Table 1, row 4, Table 2, row 3 and Table 8, row 1: neither the addition of the structural
# feature nor the motion layer
model = dict(backbone=dict(structure_injection=False, motion_layer=False))
