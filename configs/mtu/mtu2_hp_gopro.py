_base_ = ['./mtu2_gopro.py']
# "hp": MTU2 trained with mixed precision (float16 autocast + loss scaling, both optimisers; on
# a CPU tools/train.py uses bfloat16 autocast) and run in half precision at inference (paper
# Tables 3, 4, 7; the reference trains it with AMP)
model = dict(infer_dtype='float16')
optim_wrapper = dict(deblur=dict(type='AmpOptimWrapper', loss_scale='dynamic'),
                     motion=dict(type='AmpOptimWrapper', loss_scale='dynamic'))
