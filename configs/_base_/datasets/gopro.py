# GoPro_Large (Nah et al.): <data_root>/{train,test}/<seq>/{blur_gamma,sharp}/*.png
#   python tools/dataset_converters/convert_to_lmdb.py data/GOPRO_Large data/GoPro_lmdb --flow
_base_ = ['./video_deblur.py']
_data = dict(data_root='data/GoPro_lmdb', backend='lmdb', layout='gopro')
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
