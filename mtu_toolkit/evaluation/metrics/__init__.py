from .psnr_ssim import psnr, ssim
from .video_restoration_metric import VideoRestorationMetric

__all__ = ['psnr', 'ssim', 'VideoRestorationMetric']
