"""Compile-only check of the CUDA kernels with nvcc (no GPU needed), so a broken kernel fails CI.

The kernel headers (csrc/cuda/*_kernels.cuh) are instantiated for every dtype the launch layer
dispatches (float, double, c10::Half, c10::BFloat16); the launch layer (csrc/cuda/*.cu) is
compiled too when torch ships its CUDA build headers (a CPU build of torch lacks
c10/cuda/impl/cuda_cmake_macros.h, and then only that part is skipped, saying so).
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_DIR = os.path.join(ROOT, 'csrc', 'cuda')
NVCC = shutil.which('nvcc') or (os.path.join(os.environ['CUDA_HOME'], 'bin', 'nvcc')
                                if os.environ.get('CUDA_HOME') else None)

pytestmark = pytest.mark.skipif(NVCC is None or not os.path.exists(NVCC),
                                reason='nvcc not found (set CUDA_HOME or put nvcc on PATH)')

KERNELS = {
    'correlation_forward_kernel': '(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t, '
                                  'int64_t)',
    'correlation_backward_kernel': '(const T*, const T*, const T*, T*, T*, int64_t, int64_t, '
                                   'int64_t, int64_t, int64_t)',
    'correlation_argmax_rows_kernel': '(const T*, const T*, double*, int32_t*, int64_t, int64_t, '
                                      'int64_t, int64_t, int)',
    'correlation_argmax_rows_staged_kernel': '(const T*, const T*, double*, int32_t*, int64_t, '
                                             'int64_t, int64_t, int64_t, int)',
}
WARP_KERNELS = ['warp_forward_kernel', 'warp_backward_kernel']
WARP_ARGS = '(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t, int64_t, ' \
            'int64_t, int64_t)'
DTYPES = ['float', 'double', 'c10::Half', 'c10::BFloat16']


def nvcc_command(source, output):
    from torch.utils.cpp_extension import COMMON_NVCC_FLAGS, include_paths
    includes = [f'-I{p}' for p in include_paths()] + [f'-I{CUDA_DIR}']
    return [NVCC, '-c', source, '-o', output, '-std=c++20', '-O1', '-arch=sm_80',
            '-DMTU_WITH_CUDA', '-Xcompiler', '-Wno-c++20-extensions', *COMMON_NVCC_FLAGS,
            *includes]


def compile_ok(source, output):
    proc = subprocess.run(nvcc_command(source, output), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, f'nvcc failed on {source}:\n{proc.stderr[-4000:]}'
    assert os.path.getsize(output) > 0


def test_cuda_kernels_compile_for_every_dtype(tmp_path):
    lines = ['#include <ATen/OpMathType.h>', '#include <c10/util/BFloat16.h>',
             '#include <c10/util/Half.h>', '#include "correlation_kernels.cuh"',
             '#include "warp_kernels.cuh"']
    for dtype in DTYPES:
        for name, args in KERNELS.items():
            lines.append(f'template __global__ void mtu::cuda::{name}<{dtype}, '
                         f'at::opmath_type<{dtype}>>{args.replace("T", dtype)};')
        for name in WARP_KERNELS:
            lines.append(f'template __global__ void mtu::cuda::{name}<{dtype}>'
                         f'{WARP_ARGS.replace("T", dtype)};')
    source = tmp_path / 'instantiate_kernels.cu'
    source.write_text('\n'.join(lines) + '\n')
    compile_ok(str(source), str(tmp_path / 'kernels.o'))
    symbols = subprocess.run(['nm', '-C', str(tmp_path / 'kernels.o')], capture_output=True,
                             text=True).stdout
    for name in [*KERNELS, *WARP_KERNELS]:
        assert f'mtu::cuda::{name}<c10::BFloat16' in symbols, name
    assert 'mtu::cuda::correlation_argmax_pick_kernel(' in symbols


@pytest.mark.parametrize('source', ['correlation_cuda.cu', 'warp_cuda.cu'])
def test_cuda_launch_layer_compiles(source, tmp_path):
    from torch.utils.cpp_extension import include_paths
    if not any(os.path.exists(os.path.join(p, 'c10', 'cuda', 'impl', 'cuda_cmake_macros.h'))
               for p in include_paths()):
        pytest.skip('torch is a CPU build without its CUDA headers '
                    '(c10/cuda/impl/cuda_cmake_macros.h): only the kernels were compiled')
    compile_ok(os.path.join(CUDA_DIR, source), str(tmp_path / 'launch.o'))
