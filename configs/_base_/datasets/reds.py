# REDS (Nah et al.): <data_root>/{train,val}_{blur,sharp}/<seq>/*.png; tested on val
#   python tools/dataset_converters/convert_to_lmdb.py data/REDS data/REDS_lmdb --flow
_base_ = ['./video_deblur.py']
_data = dict(data_root='data/REDS_lmdb', backend='lmdb', layout='reds')
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=dict(_data, split='val'))
test_dataloader = val_dataloader
