# GoPro_Large read straight from its folders (<data_root>/{train,test}/<seq>/{blur_gamma,sharp});
# flow cached in <data_root>/.mtu_flow/<split>.lmdb on first use. Swap it for ./gopro.py.
_base_ = ['./video_deblur.py']
_data = dict(data_root='data/GOPRO_Large', backend='disk', layout='gopro')
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
