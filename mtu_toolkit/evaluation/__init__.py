"""Evaluation: PSNR / SSIM functions and the registered video restoration metric."""
from .metrics import VideoRestorationMetric, psnr, ssim

__all__ = ['psnr', 'ssim', 'VideoRestorationMetric']
