from .deblur_loss import MultiOutputDeblurLoss
from .frame_loss import FrameLoss
from .motion_loss import MotionCrossEntropyLoss, flow_to_motion_target
from .pixel_loss import L1Loss, MSELoss

__all__ = ['FrameLoss', 'MultiOutputDeblurLoss', 'MotionCrossEntropyLoss',
           'flow_to_motion_target', 'L1Loss', 'MSELoss']
