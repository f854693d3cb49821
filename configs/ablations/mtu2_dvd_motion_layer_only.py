_base_ = ['../mtu/mtu2_dvd.py']
# Table 8, row 2: motion layer without the addition of the structural feature
model = dict(backbone=dict(structure_injection=False))
