from .alignment_metric import MCAlignmentMetric, alignment_scores
from .koehler import koehler_align, register_translation, shift_with_zeros
from .matlab_metrics import matlab_psnr, matlab_ssim, to_uint8
from .protocols import PROTOCOLS, EvalProtocol, get_protocol, reference_psnr
from .psnr_ssim import psnr, ssim, ssim_uniform
from .video_restoration_metric import VideoRestorationMetric

__all__ = ['psnr', 'ssim', 'ssim_uniform', 'matlab_psnr', 'matlab_ssim', 'to_uint8',
           'reference_psnr', 'koehler_align', 'register_translation', 'shift_with_zeros',
           'EvalProtocol', 'PROTOCOLS', 'get_protocol', 'VideoRestorationMetric',
           'MCAlignmentMetric', 'alignment_scores']
