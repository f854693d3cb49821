# The MTU restorer (paper defaults: MTU2, ch 26, 8 residual blocks, D = 10, skipping on).
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
        residual=True),
    # the paper's L1; the reference implementation used 'l1+mse'
    deblur_loss=dict(type='MultiOutputDeblurLoss', final_weight=1.0, aux_weight=0.1,
                     loss_type='l1'),
    motion_loss=dict(type='MotionCrossEntropyLoss', loss_weight=0.01),
    infer_dtype=None,
    data_preprocessor=dict(type='VideoDataPreprocessor'))
