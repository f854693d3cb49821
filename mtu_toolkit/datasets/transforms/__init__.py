from .clip_transforms import (ClipGaussianNoise, ClipRandomCrop, ClipRandomFlip,
                              ClipRandomRot90, rot90_flow_vectors)

__all__ = ['ClipGaussianNoise', 'ClipRandomCrop', 'ClipRandomFlip', 'ClipRandomRot90',
           'rot90_flow_vectors']
