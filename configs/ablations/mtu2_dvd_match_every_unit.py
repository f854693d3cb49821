_base_ = ['../mtu/mtu2_dvd.py']
# Table 6: feature matching in every unit (w/o skipping)
model = dict(backbone=dict(match_every_unit=True))
