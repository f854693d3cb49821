_base_ = ['../mtu/mtu2_dvd.py']
# Table 1, row 3: no residual learning (the outputs are the restored frames themselves), the MC
# module with the motion loss on the detail network's own features: like every model of Table 1,
# without structure injection (neither the addition of the structural feature nor the motion
# layer)
model = dict(backbone=dict(residual=False, structure_injection=False, motion_layer=False))
