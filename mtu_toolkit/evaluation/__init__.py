"""Evaluation: PSNR / SSIM functions, the evaluation protocols, the registered video
restoration metric and the motion compensation's alignment accuracy."""
from .metrics import (PROTOCOLS, EvalProtocol, MCAlignmentMetric, VideoRestorationMetric,
                      alignment_scores, get_protocol, koehler_align, matlab_psnr, matlab_ssim,
                      psnr, reference_psnr, ssim, ssim_uniform, to_uint8)
from .protocol_config import apply_protocol

__all__ = ['psnr', 'ssim', 'ssim_uniform', 'matlab_psnr', 'matlab_ssim', 'to_uint8',
           'reference_psnr', 'koehler_align', 'EvalProtocol', 'PROTOCOLS', 'get_protocol',
           'apply_protocol', 'VideoRestorationMetric', 'MCAlignmentMetric', 'alignment_scores']
