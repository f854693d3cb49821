# The MTU restorer as the paper trains it (MTU2: 2 units, ch 26, 8 residual blocks, D = 10,
# feature matching in the first unit only). Where each number comes from: docs/recipe.md.
model = dict(
    type='MTURestorer',
    backbone=dict(
        type='MTUNet',
        num_units=2,
        channels=26,
        num_blocks=8,
        mc_head=dict(type='CorrelationMCHead', max_displacement=10, smooth=5),
        match_every_unit=False,
        structure_injection=True,
        motion_layer=True,
        residual=True,
        weight_init='normal', init_std=0.03),  # every conv from N(0, 0.03), biases 0
    # L1 + MSE on the final output, 0.1 x the mean over the N-1 auxiliary outputs
    deblur_loss=dict(type='MultiOutputDeblurLoss',
                     pixel_loss=[dict(type='L1Loss'), dict(type='MSELoss')],
                     final_weight=1.0, aux_weight=0.1, aux_reduction='mean'),
    # weight 1: its own optimiser runs at 0.01 x the learning rate (../schedules)
    motion_loss=dict(type='MotionCrossEntropyLoss', loss_weight=1.0),
    infer_dtype=None,
    data_preprocessor=dict(type='VideoDataPreprocessor'))
