_base_ = ['../mtu/mtu2_dvd.py']
# Table 5: maximum displacement D = 10 (the default, spelled out for the table's row)
model = dict(backbone=dict(mc_head=dict(max_displacement=10)))
