"""Install mtu_toolkit (editable: ``pip install --no-build-isolation --no-deps -e .``).

The build compiles the motion-compensation ops in ``csrc/`` into ``mtu_toolkit._ext``: C++ CPU
kernels always, CUDA kernels too when torch sees a GPU or ``FORCE_CUDA=1`` (given a CUDA build of
torch and nvcc).
``MTU_SKIP_EXT=1`` skips the compilation; ``mtu_toolkit.ops`` then warns once and runs the
pure-PyTorch references. No build isolation, so the build uses the installed torch.
"""
import glob
import os

from setuptools import find_packages, setup


def read_requirements(path='requirements.txt'):
    with open(path) as f:
        return [ln.split('#')[0].strip() for ln in f if ln.split('#')[0].strip()]


def env_flag(name):
    return os.environ.get(name, '0').strip().lower() not in ('', '0', 'false', 'no')


def extensions():
    """The ``mtu_toolkit._ext`` extension and its build command, or nothing when skipped."""
    if env_flag('MTU_SKIP_EXT'):
        print('[mtu_toolkit] MTU_SKIP_EXT is set: not compiling csrc/ '
              '(the ops will fall back to the pure-PyTorch references)')
        return [], {}
    import torch
    from torch.utils.cpp_extension import (CUDA_HOME, BuildExtension, CppExtension,
                                           CUDAExtension)

    sources = sorted(glob.glob('csrc/*.cpp') + glob.glob('csrc/cpu/*.cpp'))
    # -O3 lets GCC vectorise the contiguous inner loops for the baseline ISA of the wheel (no
    # -march=native, which would crash on older CPUs); no -ffast-math, so float sums keep
    # their order and results stay deterministic. OpenMP drives at::parallel_for, as in torch.
    cxx = ['-O3', '-std=c++20', '-fopenmp', '-ffp-contract=off', '-Wno-psabi']
    with_cuda = (torch.cuda.is_available() or env_flag('FORCE_CUDA')) and CUDA_HOME is not None
    if with_cuda and torch.version.cuda is None:
        # a CPU build of torch has no CUDA runtime to launch kernels with (nor all its headers)
        print('[mtu_toolkit] FORCE_CUDA ignored: the installed torch is a CPU build')
        with_cuda = False
    if with_cuda:
        ext = CUDAExtension(
            'mtu_toolkit._ext', sources + sorted(glob.glob('csrc/cuda/*.cu')),
            define_macros=[('MTU_WITH_CUDA', None)],
            extra_compile_args={'cxx': cxx, 'nvcc': ['-O3', '-std=c++20']},
            extra_link_args=['-fopenmp'])
    else:
        ext = CppExtension('mtu_toolkit._ext', sources, extra_compile_args={'cxx': cxx},
                           extra_link_args=['-fopenmp'])
    print(f'[mtu_toolkit] compiling mtu_toolkit._ext ({"CPU + CUDA" if with_cuda else "CPU"})')
    return [ext], {'build_ext': BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extensions()

setup(
    name='mtu_toolkit',
    version='0.1.0',
    description='Real-time video deblurring with stacked multi-task units (MTU), on mmengine',
    packages=find_packages(include=['mtu_toolkit', 'mtu_toolkit.*']),
    python_requires='>=3.9',
    install_requires=['torch>=2.0'] + read_requirements(),
    extras_require={'tests': read_requirements('requirements-tests.txt')},
    include_package_data=True,
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
