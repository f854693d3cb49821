"""The portable build: both extensions' CPU sources compile with the x86 paths disabled.

``csrc/common/cpu_features.h`` defines ``MTU_X86`` only on x86-64 with GCC or Clang; on other
CPUs (ARM) no x86 intrinsic, vector type or target pragma may reach the compiler, or the build
fails there. ``-DMTU_NO_X86`` builds that portable code on this machine: the preprocessed text
of the project's own files in every CPU source of ``mtu_toolkit._ext`` and
``mtu_toolkit._conv_cpu`` is searched for x86 constructs, and the sources whose code depends on
the guard are compiled (``-c -O0``: every template they instantiate is compiled, quickly). A
control run without the flag finds the constructs, so the search itself is known to work.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, 'csrc')
CXX = os.environ.get('CXX') or shutil.which('g++') or shutil.which('c++')

#: the CPU sources of both extensions (the CUDA launch layer is nvcc's: test_ops_cuda_build.py)
SOURCES = sorted(glob.glob(os.path.join(CSRC, '*.cpp')) + glob.glob(os.path.join(CSRC, 'cpu',
                                                                                  '*.cpp'))
                 + glob.glob(os.path.join(CSRC, 'conv_cpu', '*.cpp')))

#: x86-only constructs: intrinsics headers, vector types, intrinsics, target pragmas/attributes,
#: x86 CPU queries
X86 = re.compile(r'immintrin|x86intrin|\b__m(128|256|512)\w*|\b_mm(256|512)?_\w+|'
                 r'#pragma\s+GCC\s+target|target\s*\(\s*"|__builtin_cpu_supports')

pytestmark = pytest.mark.skipif(CXX is None, reason='no C++ compiler (g++ / c++) on PATH')


def compiler_args(portable):
    from torch.utils.cpp_extension import include_paths
    import sysconfig
    args = ['-std=c++20', '-fPIC', '-Wno-psabi', f'-I{sysconfig.get_paths()["include"]}',
            '-DTORCH_EXTENSION_NAME=_guard', '-DTORCH_API_INCLUDE_EXTENSION_H']
    args += [f'-I{p}' for p in include_paths()]
    return args + (['-DMTU_NO_X86'] if portable else [])


def own_lines(preprocessed):
    """The lines of ``g++ -E`` output that come from the project's files (csrc/), after the
    line markers (``# 12 "path" flags``) that say where each line comes from."""
    keep, lines = False, []
    for line in preprocessed.splitlines():
        marker = re.match(r'#\s+\d+\s+"([^"]*)"', line)
        if marker:
            path = os.path.abspath(os.path.join(ROOT, marker.group(1)))
            keep = path.startswith(CSRC + os.sep)
            continue
        if keep:
            lines.append(line)
    return lines


def x86_constructs(source, portable):
    proc = subprocess.run([CXX, '-E', source, *compiler_args(portable)], capture_output=True,
                          text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, f'preprocessing {source} failed:\n{proc.stderr[-3000:]}'
    return sorted({m.group(0) for line in own_lines(proc.stdout) for m in X86.finditer(line)})


def compile_object(source, output):
    proc = subprocess.run([CXX, '-c', '-O0', source, '-o', output, *compiler_args(True)],
                          capture_output=True, text=True, timeout=400, cwd=ROOT)
    return source, proc


def parallel(fn, items):
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(fn, items))


@pytest.fixture(scope='module')
def portable_constructs():
    """{source: the x86 constructs its preprocessed text holds with MTU_NO_X86}."""
    return dict(zip(SOURCES, parallel(lambda s: x86_constructs(s, portable=True), SOURCES)))


def test_sources_found():
    names = {os.path.relpath(s, CSRC) for s in SOURCES}
    assert {'bindings.cpp', 'cpu/correlation_cpu.cpp', 'cpu/warp_cpu.cpp',
            'conv_cpu/conv_cpu.cpp', 'conv_cpu/bindings.cpp'} <= names, names


@pytest.mark.parametrize('source', SOURCES, ids=lambda s: os.path.relpath(s, CSRC))
def test_no_x86_code_reaches_the_compiler(source, portable_constructs):
    found = portable_constructs[source]
    assert not found, f'{os.path.relpath(source, ROOT)} compiles x86 code with MTU_NO_X86: {found}'


@pytest.mark.skipif(not sys.platform.startswith('linux') or os.uname().machine != 'x86_64',
                    reason='the control needs the x86 build (x86-64)')
def test_search_finds_the_x86_code_of_the_normal_build():
    sources = [os.path.join(CSRC, s) for s in ('conv_cpu/conv_cpu.cpp', 'cpu/correlation_cpu.cpp')]
    for source, found in zip(sources, parallel(lambda s: x86_constructs(s, False), sources)):
        assert found, f'the x86 build of {source} shows none of the searched constructs'


def test_portable_build_compiles(tmp_path):
    """The sources whose code depends on the guard (those including cpu_features.h) compile to
    object files with MTU_NO_X86; the others compile the same in either build."""
    guarded = [s for s in SOURCES if 'cpu_features.h' in open(s).read()]
    assert len(guarded) >= 2, guarded  # the correlation kernels and the conv engine
    jobs = [(s, str(tmp_path / f'{i}.o')) for i, s in enumerate(guarded)]
    results = parallel(lambda job: compile_object(*job), jobs)
    failed = [(s, p.stderr[-3000:]) for s, p in results if p.returncode != 0]
    assert not failed, '\n'.join(f'{os.path.relpath(s, ROOT)}:\n{err}' for s, err in failed)
    for _, output in jobs:
        assert os.path.getsize(output) > 0
