from .clip_transforms import (ClipCropToMultiple, ClipGaussianNoise, ClipRandomCrop,
                              ClipRandomFlip, ClipRandomRot90, rot90_flow_vectors)

__all__ = ['ClipCropToMultiple', 'ClipGaussianNoise', 'ClipRandomCrop', 'ClipRandomFlip',
           'ClipRandomRot90', 'rot90_flow_vectors']
