# REDS read straight from its folders (<data_root>/{train,val}_{blur,sharp}/<seq>/*.png); tested
# on val; flow cached in <data_root>/.mtu_flow/<split>.lmdb on first use. Swap it for ./reds.py.
_base_ = ['./video_deblur.py']
_data = dict(data_root='data/REDS', backend='disk', layout='reds')
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=dict(_data, split='val'))
test_dataloader = val_dataloader
