# DVD read straight from its folders (<data_root>/{train,test}/<video>/{input,GT}/*.jpg); the
# sharp-frame flow of the motion loss is computed on first use and cached in
# <data_root>/.mtu_flow/<split>.lmdb. Swap it for ./dvd.py in a config to use it.
_base_ = ['./video_deblur.py']
_data = dict(data_root='data/DVD', backend='disk', layout='dvd')
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
