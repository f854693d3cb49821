"""tools/env.sh and tools/install.sh against an externally managed Python (PEP 668).

A distribution's own Python (Debian/Ubuntu's /usr/bin/python3) carries an ``EXTERNALLY-MANAGED``
marker in its standard library folder and pip refuses to install into it. The tests make such an
interpreter from this one: a copy of the executable in a new prefix whose ``lib/pythonX.Y``
links the standard library (not site-packages) and holds the marker. It is not a venv (pip
ignores the marker inside venvs), so it behaves like the distribution's Python; leaving out
``ensurepip`` makes it behave like Debian without the python3-venv package.
"""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VERSION = f'python{sys.version_info[0]}.{sys.version_info[1]}'
pytestmark = pytest.mark.skipif(os.name != 'posix', reason='the set-up scripts are bash')


def distribution_python(prefix, ensurepip=True):
    """A non-venv Python in ``prefix`` that pip treats as externally managed; its path."""
    base = sys.base_prefix
    stdlib = sysconfig.get_path('stdlib', vars={'installed_base': base, 'base': base})
    exe = osp.realpath(getattr(sys, '_base_executable', None)
                       or osp.join(base, 'bin', VERSION))
    if not (osp.isfile(osp.join(stdlib, 'os.py')) and osp.isfile(exe)):
        pytest.skip(f'no standard library at {stdlib} / interpreter at {exe} to copy')
    lib = osp.join(prefix, 'lib', VERSION)
    os.makedirs(osp.join(prefix, 'bin'))
    os.makedirs(osp.join(lib, 'site-packages'))
    shutil.copy2(exe, osp.join(prefix, 'bin', VERSION))
    os.symlink(VERSION, osp.join(prefix, 'bin', 'python3'))
    for path in glob.glob(osp.join(base, 'lib', 'libpython*')):  # a shared-library build
        os.symlink(path, osp.join(prefix, 'lib', osp.basename(path)))
    skipped = {'site-packages', 'dist-packages'} | (set() if ensurepip else {'ensurepip'})
    for name in os.listdir(stdlib):
        if name not in skipped:
            os.symlink(osp.join(stdlib, name), osp.join(lib, name))
    with open(osp.join(lib, 'EXTERNALLY-MANAGED'), 'w') as f:
        f.write('[externally-managed]\nError=a test stand-in for a distribution Python\n')
    python = osp.join(prefix, 'bin', 'python3')
    probe = subprocess.run([python, '-c', 'import sys, sysconfig; print(sys.prefix, '
                            'sys.base_prefix, sysconfig.get_path("stdlib"))'],
                           capture_output=True, text=True)
    assert probe.stdout.split() == [str(prefix), str(prefix), lib], probe.stderr
    return python


def copy_checkout(dest):
    """The files of this checkout that git tracks or would track (no build outputs, no venv)."""
    try:
        out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others',
                              '--exclude-standard'], cwd=ROOT, capture_output=True, check=True)
        files = [f for f in out.stdout.decode().split('\0') if f]
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('not a git checkout: cannot tell source files from build outputs')
    for rel in files:
        if osp.isfile(osp.join(ROOT, rel)):
            os.makedirs(osp.dirname(osp.join(dest, rel)), exist_ok=True)
            shutil.copy2(osp.join(ROOT, rel), osp.join(dest, rel))
    return dest


def clean_env(**extra):
    """This environment without the variables that choose or extend a Python."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHON', 'VIRTUAL_ENV', 'CONDA_PREFIX', 'PYTHONPATH', 'PYTHONHOME',
                        'PYTHONSAFEPATH', 'PYTHONNOUSERSITE')}
    env.update(extra)
    return env


def env_sh(repo, **extra):
    return subprocess.run(['bash', osp.join(repo, 'tools', 'env.sh')], cwd=repo,
                          env=clean_env(**extra), capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(tmp_path):
    """A checkout with just the interpreter choice (tools/env.sh)."""
    os.makedirs(tmp_path / 'repo' / 'tools')
    shutil.copy2(osp.join(ROOT, 'tools', 'env.sh'), tmp_path / 'repo' / 'tools')
    return tmp_path / 'repo'


def test_externally_managed_python_gets_the_project_venv(tmp_path, repo):
    dist_python = distribution_python(tmp_path / 'dist')
    venv_python = str(repo / '.venv' / 'bin' / 'python')
    proc = env_sh(repo, PYTHON=dist_python)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [venv_python]
    assert 'externally managed' in proc.stderr and 'making' in proc.stderr
    made = subprocess.run([venv_python, '-c', 'import sys, pip; print(sys.prefix, '
                           'sys.base_prefix)'], capture_output=True, text=True)
    assert made.stdout.split() == [str(repo / '.venv'), str(tmp_path / 'dist')], made.stderr
    # reused as it is, by PYTHON=... and by python3 on PATH alike
    again = env_sh(repo, PYTHON=dist_python)
    assert again.stdout.splitlines() == [venv_python] and 'making' not in again.stderr
    path = f'{tmp_path / "dist" / "bin"}{os.pathsep}{os.environ["PATH"]}'
    assert env_sh(repo, PATH=path).stdout.splitlines() == [venv_python]
    # nothing went into the distribution's Python
    assert os.listdir(tmp_path / 'dist' / 'lib' / VERSION / 'site-packages') == []

    # another Python than the one .venv/ was made from: told, not mixed
    other = distribution_python(tmp_path / 'other')
    proc = env_sh(repo, PYTHON=other)
    assert proc.returncode != 0 and 'made from another Python' in proc.stderr


def test_a_python_pip_may_install_into_is_used_as_it_is(tmp_path, repo):
    # python3 on PATH is this test's interpreter (pyenv, conda or a venv: not externally managed)
    if sys.prefix == sys.base_prefix and osp.isfile(
            osp.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')):
        pytest.skip('the tests run with an externally managed Python')
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'python3').write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / 'python3').chmod(0o755)
    proc = env_sh(repo, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [sys.executable]
    assert not (repo / '.venv').exists()


def test_venv_that_cannot_be_made_says_which_package_and_leaves_nothing(tmp_path, repo):
    no_venv = distribution_python(tmp_path / 'dist', ensurepip=False)
    proc = env_sh(repo, PYTHON=no_venv)
    assert proc.returncode != 0 and proc.stdout == ''
    errors = [ln for ln in proc.stderr.splitlines() if 'error' in ln]
    assert len(errors) == 1 and 'python3-venv' in errors[0] and no_venv in errors[0], \
        proc.stderr
    assert not (repo / '.venv').exists()


def test_interrupted_venv_is_made_again_and_a_foreign_one_is_kept(tmp_path, repo):
    dist_python = distribution_python(tmp_path / 'dist')
    (repo / '.venv' / 'bin').mkdir(parents=True)
    (repo / '.venv' / 'made-by-mtu-toolkit-install').touch()  # made here, then interrupted
    proc = env_sh(repo, PYTHON=dist_python)
    assert proc.returncode == 0 and 'incomplete' in proc.stderr, proc.stderr
    assert (repo / '.venv' / 'bin' / 'python').exists()

    shutil.rmtree(repo / '.venv')
    (repo / '.venv').mkdir()
    (repo / '.venv' / 'mine').touch()  # not a venv these scripts made: never removed
    proc = env_sh(repo, PYTHON=dist_python)
    assert proc.returncode != 0 and 'not a usable virtual environment' in proc.stderr
    assert (repo / '.venv' / 'mine').exists()


def torch_without_download():
    """True when pip can install this torch from local files (no multi-GB download)."""
    import torch
    version = torch.__version__.split('+')[0]
    proc = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-index',
                           '--no-deps', '--ignore-installed', '-q', f'torch=={version}'],
                          capture_output=True, text=True)
    return proc.returncode == 0 and version == '2.13.0'


def real_distribution_python():
    """/usr/bin/python3 when it is externally managed and of this version (Debian, Ubuntu)."""
    probe = subprocess.run(['/usr/bin/python3', '-c', 'import os, sys, sysconfig; print(sys.'
                            'version_info[:2] == (%d, %d) and os.path.isfile(os.path.join('
                            'sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'
                            % sys.version_info[:2]], capture_output=True, text=True) \
        if osp.isfile('/usr/bin/python3') else None
    return '/usr/bin/python3' if probe and probe.stdout.strip() == 'True' else None


@pytest.mark.slow
def test_install_into_externally_managed_python_then_demo_data_stage(tmp_path):
    """tools/install.sh with a distribution's Python: .venv/ with torch, the runtime
    requirements only, and the package from this checkout, which the demo's first stage (data)
    then runs with."""
    if not torch_without_download():
        pytest.skip('torch==2.13.0 is not available from local files (would download)')
    # the real one where there is one: its own pip and setuptools are what a user starts from
    dist_python = real_distribution_python() or distribution_python(tmp_path / 'dist')
    repo = copy_checkout(tmp_path / 'repo')
    env = clean_env(PYTHON=dist_python, MTU_SKIP_EXT='1')  # the compilation: tests/test_ops*
    # the README's main command, down to its set-up and a run of tools/demo.py with .venv/
    proc = subprocess.run(['bash', 'tools/demo.sh', '--help'], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'making the project virtual environment' in proc.stderr
    assert 'usage: demo.py' in proc.stdout
    venv_python = str(repo / '.venv' / 'bin' / 'python')
    if dist_python != '/usr/bin/python3':
        assert os.listdir(tmp_path / 'dist' / 'lib' / VERSION / 'site-packages') == []

    # the package imports from the copy, through the venv's editable install (not the cwd)
    code = ('import importlib.util, mtu_toolkit, torch; print(mtu_toolkit.__file__); '
            'print(torch.__version__); print(importlib.util.find_spec("pytest") is None)')
    out = subprocess.run([venv_python, '-c', code], cwd=tmp_path, env=clean_env(),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    package, torch_version, no_pytest = out.stdout.split()
    assert package == str(repo / 'mtu_toolkit' / '__init__.py')
    assert torch_version.startswith('2.13.0') and no_pytest == 'True'  # runtime requirements

    # the package build sees this torch (no build isolation, which would fetch a bare build
    # environment from the index; old pips took that path through `setup.py develop`)
    subprocess.run([venv_python, '-m', 'pip', 'uninstall', '-y', '-q', 'mtu_toolkit'],
                   check=True, capture_output=True)
    proc = subprocess.run(['bash', 'tools/install.sh'], cwd=repo, capture_output=True,
                          text=True, env=dict(env, PIP_NO_INDEX='1'), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'installing mtu_toolkit (editable)' in proc.stdout

    # the demo's first stage and the other run-time data sources, with the runtime
    # requirements only: rendered from the photographs, converted to LMDB with flow
    code = ('import sys; sys.path.insert(0, "tools"); import demo\n'
            'from mtu_toolkit.analysis.benchmark import PanningClip\n'
            'from mtu_toolkit.datasets.synthetic import bundled_footage\n'
            'assert tuple(PanningClip(32, 48, "cpu").window(0).shape) == (1, 5, 3, 32, 48)\n'
            'assert bundled_footage()["bikes"].endswith("bikes.mp4")\n'
            'print(demo.make_data(sys.argv[1]))\n')
    out = subprocess.run([venv_python, '-c', code, str(tmp_path / 'demo')], cwd=repo,
                         env=clean_env(OMP_NUM_THREADS='1'), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lmdb_root = out.stdout.splitlines()[-1]
    for split, seqs in (('train', 12), ('test', 3)):
        for kind in ('blur', 'sharp', 'flow'):
            with open(osp.join(lmdb_root, split, f'{kind}.lmdb', 'meta_info.txt')) as f:
                assert len(f.read().splitlines()) == seqs


def test_the_sdist_holds_every_tracked_file_users_and_tests_need(tmp_path):
    """Every tracked file is in the source distribution: what README links or runs (docs,
    benchmarks, the plugin example, the requirement files) and the whole test suite (its
    helpers, configs, golden fixtures and pytest.ini)."""
    import tarfile
    src = tmp_path / 'src'
    copy_checkout(src)
    proc = subprocess.run([sys.executable, 'setup.py', '-q', 'sdist', '-d', str(tmp_path)],
                          cwd=src, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MTU_SKIP_EXT='1'))
    assert proc.returncode == 0, proc.stderr[-2000:]
    with tarfile.open(glob.glob(str(tmp_path / '*.tar.gz'))[0]) as tar:
        shipped = {name.split('/', 1)[1] for name in tar.getnames() if '/' in name}
    tracked = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True)
    wanted = {f for f in tracked.stdout.split() if f != '.gitignore'}
    if tracked.returncode or not wanted:
        pytest.skip('not a git checkout')
    assert sorted(wanted - shipped) == []


def test_a_build_that_cannot_see_torch_says_how_to_build(tmp_path):
    """pip's isolated build (``pip install .``) does not see the installed torch: one line
    saying what to run instead, not a traceback."""
    proc = subprocess.run([sys.executable, '-c', 'import sys; sys.modules["torch"] = None; '
                           'sys.argv = ["setup.py", "--name"]; exec(open("setup.py").read())'],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        'error: building mtu_toolkit needs torch installed first, and pip without build '
        'isolation (so that the build sees it): bash tools/install.sh, or pip install '
        '--no-build-isolation --use-pep517 --no-deps -e .'], proc.stderr
