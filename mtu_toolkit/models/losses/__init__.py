from .deblur_loss import MultiOutputDeblurLoss, pixel_loss
from .motion_loss import MotionCrossEntropyLoss, flow_to_motion_target

__all__ = ['MultiOutputDeblurLoss', 'MotionCrossEntropyLoss', 'flow_to_motion_target', 'pixel_loss']
