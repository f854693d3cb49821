# The reference implementation's training data (docs/recipe.md): every sequence cut into
# consecutive 13-frame clips, each clip once an epoch (videos weigh by their length), the left
# context clamped to the clip's first frame (I_0 = I_1), 256x256 crops, and identical across a
# clip: with p 0.5 one of 90 CCW / 90 CW / 180 rotations (0.3 / 0.3 / 0.4), with p 0.5 one of
# vertical / horizontal / both flips (0.3 / 0.3 / 0.4), and per frame with p 0.5 Gaussian noise
# of sigma 1e-4 on the blurry and the sharp frame (clipped to [0, 1]). Whole sequences to test.
_pick = (0.3, 0.3, 0.4)
train_pipeline = [
    dict(type='ClipRandomCrop', size=256),
    dict(type='ClipRandomRot90', prob=0.5, choice_probs=_pick),
    dict(type='ClipRandomFlip', prob=0.5, choice_probs=_pick),
    dict(type='ClipGaussianNoise', sigma=1e-4, prob=0.5, keys=('inputs', 'gt'), per_frame=True,
         clip=True),
]
_loader = dict(num_workers=4, persistent_workers=True, collate_fn=dict(type='default_collate'))
train_dataloader = dict(
    _loader,
    # the TOTAL batch: tools/train.py splits it evenly over the processes (8 GPUs: 1 each, as
    # the reference); it must divide by their number
    batch_size=8,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='VideoDeblurDataset', split='train', num_frames=13, sampling='grid',
                 clamp_context='clip', with_flow=True, pipeline=train_pipeline))
val_dataloader = dict(
    _loader, batch_size=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='VideoDeblurDataset', split='test'))
test_dataloader = val_dataloader
