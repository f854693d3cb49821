"""Install mtu_toolkit, editable, as ``tools/install.sh`` does:
``pip install --no-build-isolation --use-pep517 --no-deps -e .``.

The build compiles two extensions from ``csrc/``, each on its own (a failed build of one never
loses the other; the build says which were built):

* ``mtu_toolkit._ext``: the motion-compensation ops (``csrc/bindings.cpp``, ``csrc/cpu``): C++
  CPU kernels always, CUDA kernels (``csrc/cuda``) too when torch sees a GPU or
  ``FORCE_CUDA=1`` (given a CUDA build of torch and nvcc);
* ``mtu_toolkit._conv_cpu``: the CPU convolution engine for inference (``csrc/conv_cpu``;
  x86 SIMD kernels, portable stubs elsewhere).

``MTU_BUILD_ONLY=mtu_toolkit._ext`` (a comma-separated list) builds only the extensions named
(e.g. the CUDA ops on a GPU machine, without the ~minutes of the conv engine).
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
    """The extensions and their build command, or nothing when skipped."""
    if env_flag('MTU_SKIP_EXT'):
        print('[mtu_toolkit] MTU_SKIP_EXT is set: not compiling csrc/ '
              '(the ops will fall back to the pure-PyTorch references)')
        return [], {}
    try:
        import torch
    except ImportError:  # e.g. pip's isolated build, which does not see the installed torch
        raise SystemExit('error: building mtu_toolkit needs torch installed first, and pip '
                         'without build isolation (so that the build sees it): bash '
                         'tools/install.sh, or pip install --no-build-isolation --use-pep517 '
                         '--no-deps -e .') from None
    from torch.utils.cpp_extension import (CUDA_HOME, BuildExtension, CppExtension,
                                           CUDAExtension)

    # -O3 lets GCC vectorise the contiguous inner loops for the baseline ISA of the wheel (no
    # -march=native, which would crash on older CPUs; the SIMD paths are picked at run time);
    # no -ffast-math, so float sums keep their order and results stay deterministic. OpenMP
    # drives at::parallel_for, as in torch.
    cxx = ['-O3', '-std=c++20', '-fopenmp', '-ffp-contract=off', '-Wno-psabi']
    mc_sources = sorted(glob.glob('csrc/*.cpp') + glob.glob('csrc/cpu/*.cpp'))
    with_cuda = (torch.cuda.is_available() or env_flag('FORCE_CUDA')) and CUDA_HOME is not None
    if with_cuda and torch.version.cuda is None:
        # a CPU build of torch has no CUDA runtime to launch kernels with (nor all its headers)
        print('[mtu_toolkit] FORCE_CUDA ignored: the installed torch is a CPU build')
        with_cuda = False
    if with_cuda:
        mc_ops = CUDAExtension(
            'mtu_toolkit._ext', mc_sources + sorted(glob.glob('csrc/cuda/*.cu')),
            define_macros=[('MTU_WITH_CUDA', None)],
            extra_compile_args={'cxx': cxx, 'nvcc': ['-O3', '-std=c++20']},
            extra_link_args=['-fopenmp'])
    else:
        mc_ops = CppExtension('mtu_toolkit._ext', mc_sources, extra_compile_args={'cxx': cxx},
                              extra_link_args=['-fopenmp'])
    conv_engine = CppExtension('mtu_toolkit._conv_cpu', sorted(glob.glob('csrc/conv_cpu/*.cpp')),
                               extra_compile_args={'cxx': cxx}, extra_link_args=['-fopenmp'])

    class BuildEachExtension(BuildExtension):
        """Builds every extension on its own: one that fails is reported and skipped (its
        Python side falls back to PyTorch) instead of failing the whole install."""

        def run(self):
            self.built, self.failed = [], []
            super().run()
            for name in self.built:
                print(f'[mtu_toolkit] built {name}')
            for name, err in self.failed:
                print(f'[mtu_toolkit] NOT built {name}: {err} (it falls back to PyTorch; see '
                      'the compiler output above)')

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
                self.built.append(ext.name)
            except Exception as err:  # noqa: BLE001 - reported in run(), the rest still builds
                self.failed.append((ext.name, f'{type(err).__name__}: {err}'))

    exts = [mc_ops, conv_engine]
    only = [n.strip() for n in os.environ.get('MTU_BUILD_ONLY', '').split(',') if n.strip()]
    if only:
        unknown = set(only) - {e.name for e in exts}
        if unknown:
            raise SystemExit(f'MTU_BUILD_ONLY names no extension of the package: '
                             f'{sorted(unknown)} (known: {[e.name for e in exts]})')
        exts = [e for e in exts if e.name in only]
    print('[mtu_toolkit] compiling ' + ' and '.join(
        f'{e.name} ({"CPU + CUDA" if with_cuda else "CPU"})' if e is mc_ops else e.name
        for e in exts))
    return exts, {'build_ext': BuildEachExtension.with_options(use_ninja=True)}


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
