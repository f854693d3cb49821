_base_ = ['../mtu/mtu2_dvd.py']
# Table 5: maximum displacement D = 30 (the default is 10)
model = dict(backbone=dict(mc_head=dict(max_displacement=30)))
