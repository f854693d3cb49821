# Shared data pipeline: 256x256 crops of 13-frame clips (+2 context frames each side),
# augmentation identical across a clip (paper Sec. 4.1), batch 8; whole sequences for testing.
train_pipeline = [
    dict(type='ClipRandomCrop', size=256),
    dict(type='ClipRandomFlip', prob=0.5),
    dict(type='ClipRandomRot90', prob=0.5),
    dict(type='ClipGaussianNoise', sigma=1e-4),
]
_loader = dict(num_workers=4, persistent_workers=True, collate_fn=dict(type='default_collate'))
train_dataloader = dict(
    _loader, batch_size=8,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='VideoDeblurDataset', split='train', num_frames=13, with_flow=True,
                 pipeline=train_pipeline))
val_dataloader = dict(
    _loader, batch_size=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='VideoDeblurDataset', split='test'))
test_dataloader = val_dataloader
