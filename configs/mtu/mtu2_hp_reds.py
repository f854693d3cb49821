_base_ = ['./mtu2_reds.py']
# "hp": MTU2 run in half precision (autocast) at inference (paper Tables 3, 4, 7)
model = dict(infer_dtype='float16')
