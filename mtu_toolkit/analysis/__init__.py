"""Measuring the model: parameters and FLOPs per module (:mod:`.complexity`, one FLOP counter)
and honest speed measurement (:mod:`.benchmark`: synchronised frames, the GEMM-rate floor, the
motion-compensation share; :mod:`.stages`: one frame's time stage by stage against the floor
of what each stage executes)."""
from .benchmark import (VARIANTS, PanningClip, benchmark_restorer, gemm_rate, markdown_table,
                        mc_seconds, plot_quality_speed, time_frames)
from .complexity import (check_frame_size, complexity, conv_flops, count_flops,
                         frame_conv_flops)
from .stages import format_stages, frame_stages

__all__ = [
    'VARIANTS', 'PanningClip', 'benchmark_restorer', 'gemm_rate', 'markdown_table',
    'mc_seconds', 'plot_quality_speed', 'time_frames', 'check_frame_size', 'complexity',
    'conv_flops', 'count_flops', 'frame_conv_flops', 'frame_stages', 'format_stages'
]
