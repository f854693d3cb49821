"""Moves collated clips to the model's device as float RGB in [0, 1]."""
import torch
from mmengine.model import BaseDataPreprocessor

from ...registry import MODELS


def to_unit_float(x):
    """uint8 [0, 255] -> float32 [0, 1]; floating tensors pass through as float32."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.)
    return x.float()


@MODELS.register_module()
class VideoDataPreprocessor(BaseDataPreprocessor):
    """``inputs`` (B, T+4, 3, H, W) and ``data_samples['gt']`` (B, T, 3, H, W): uint8 -> float.

    ``data_samples['flow']`` (B, T, 2, H, W) and other tensors are moved to the device as they
    are; non-tensor fields (keys, frame indices) are kept.
    """

    def forward(self, data, training=False):
        data = self.cast_data(data)
        inputs = to_unit_float(data['inputs'])
        samples = data.get('data_samples')
        if isinstance(samples, dict) and 'gt' in samples:
            samples = dict(samples, gt=to_unit_float(samples['gt']))
        return dict(inputs=inputs, data_samples=samples)
