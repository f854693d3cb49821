# DVD (Su et al.): <data_root>/{train,test}/<video>/{input,GT}/*.jpg, converted to LMDB with
#   python tools/dataset_converters/convert_to_lmdb.py data/DVD data/DVD_lmdb --flow
# (./dvd_folder.py reads the folders instead).
_base_ = ['./video_deblur.py']
_data = dict(data_root='data/DVD_lmdb', backend='lmdb', layout='dvd')
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
