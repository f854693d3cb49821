_base_ = ['../mtu/mtu2_dvd.py']
# Table 1: no residual learning (outputs are the restored frames themselves)
model = dict(backbone=dict(residual=False))
