#!/usr/bin/env bash
# Set-up for a fresh machine, into the Python that tools/env.sh chooses (PYTHON=..., else the
# activated environment, the project's .venv/ or python3; a distribution's externally managed
# Python gets .venv/ made from it): torch (only when none is installed), the runtime
# requirements and the package itself (editable, with the compiled ops of csrc/). Safe and cheap
# to re-run: the package build is skipped while this checkout is installed, its compiled ops
# import, and nothing they are built from (csrc/, setup.py, torch, MTU_SKIP_EXT/FORCE_CUDA) has
# changed. MTU_SKIP_EXT=1 installs without compiling (the ops then fall back to the PyTorch
# references). MTU_EXTRA_REQUIREMENTS=FILE installs a further requirements file too.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$MTU_ROOT"
PY=$PYTHON
echo "[install] Python: $PY"

die() {
    echo "[install] error: $*" >&2
    exit 1
}

skip_ext() {  # MTU_SKIP_EXT as setup.py reads it
    case ${MTU_SKIP_EXT:-0} in
        '' | 0 | [Ff]alse | FALSE | [Nn]o | NO) return 1 ;;
        *) return 0 ;;
    esac
}

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[install] no torch found: installing torch==2.13.0"
    "$PY" -m pip install -q torch==2.13.0
fi
"$PY" -m pip install -q -r requirements.txt ${MTU_EXTRA_REQUIREMENTS:+-r "$MTU_EXTRA_REQUIREMENTS"}
if ! "$PY" -c "import cv2" >/dev/null 2>&1; then
    # mmengine and mmcv-lite pull in opencv-python, whose GUI build needs libGL, next to the
    # headless build: both write the same cv2/ files, so the headless one is put back on top
    ver=$("$PY" -c "import importlib.metadata as m; print(m.version('opencv-python-headless'))")
    echo "[install] cv2 does not import: reinstalling opencv-python-headless==$ver over it"
    "$PY" -m pip install -q --force-reinstall --no-deps "opencv-python-headless==$ver"
    "$PY" -c "import cv2" || die "cv2 (OpenCV) does not import in $PY"
fi
# The editable install builds without isolation (against this torch) and through PEP 660
# (--use-pep517: pip < 23.1 would run `setup.py develop` for a project without pyproject.toml,
# which recent setuptools turns into an isolated build that cannot see torch). That needs
# setuptools >= 64 (Python 3.12+ makes venvs without any), and before 70.1 the wheel package.
build_needs=$("$PY" - <<'PYEOF'
import importlib.util
try:
    import setuptools
    version = tuple(int(x) for x in setuptools.__version__.split('.')[:2])
except (ImportError, ValueError):
    version = (0,)
if version < (64,):
    print('setuptools>=70.1')
elif version < (70, 1) and importlib.util.find_spec('wheel') is None:
    print('wheel')
PYEOF
)
[[ -z $build_needs ]] || "$PY" -m pip install -q "$build_needs"

# Fingerprint of everything the extension build depends on.
stamp_file=build/mtu_ext.stamp
fingerprint=$( {
    find csrc -type f \( -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' \) \
        -print0 | sort -z | xargs -0 sha256sum
    sha256sum setup.py
    "$PY" -c "import sys, torch; print(sys.version, torch.__version__, torch.version.cuda)"
    echo "MTU_SKIP_EXT=${MTU_SKIP_EXT:-} FORCE_CUDA=${FORCE_CUDA:-}"
} | sha256sum | cut -d' ' -f1)

installed_here() {  # this checkout is the installed mtu_toolkit and its extension imports
    "$PY" - "$PWD" <<'PYEOF' >/dev/null 2>&1
import importlib, importlib.metadata, os, sys
# the installed package, not this directory (which `python -` puts first on the path)
sys.path = [p for p in sys.path if p not in ('', os.getcwd())]
importlib.metadata.version('mtu_toolkit')
import mtu_toolkit
assert os.path.dirname(os.path.dirname(os.path.abspath(mtu_toolkit.__file__))) == sys.argv[1]
if os.environ.get('MTU_SKIP_EXT', '0').strip().lower() in ('', '0', 'false', 'no'):
    import torch  # noqa: F401
    importlib.import_module('mtu_toolkit._ext')
PYEOF
}

build_tools() {  # a C++ compiler, Python's headers and ninja for the compiled ops
    command -v "${CXX:-c++}" >/dev/null || die "compiling the ops needs a C++ compiler" \
        "(${CXX:-c++} not found; Debian/Ubuntu: sudo apt install g++), or set MTU_SKIP_EXT=1" \
        "to run the slower PyTorch references"
    local header
    header=$("$PY" -c "import os, sysconfig as s; print(s.get_path('include') + '/Python.h')")
    [[ -f $header ]] || die "compiling the ops needs Python's headers ($header is missing;" \
        "Debian/Ubuntu: sudo apt install python3-dev), or set MTU_SKIP_EXT=1 to run the" \
        "slower PyTorch references"
    # torch builds in parallel with ninja when it finds it on PATH; a venv's own scripts first
    PATH=$("$PY" -c "import sysconfig; print(sysconfig.get_path('scripts'))"):$PATH
    command -v ninja >/dev/null || "$PY" -m pip install -q ninja
}

if [[ -f $stamp_file && $(cat "$stamp_file") == "$fingerprint" ]] && installed_here; then
    echo "[install] mtu_toolkit is installed and its compiled ops are up to date: nothing to build"
else
    if skip_ext; then
        echo "[install] installing mtu_toolkit (editable) without compiling its ops" \
            "(MTU_SKIP_EXT=$MTU_SKIP_EXT)"
    else
        build_tools
        echo "[install] installing mtu_toolkit (editable) and compiling its ops (takes a few" \
            "minutes)"
    fi
    "$PY" -m pip install -q --no-build-isolation --use-pep517 --no-deps -e .
    mkdir -p build
    echo "$fingerprint" > "$stamp_file.tmp" && mv "$stamp_file.tmp" "$stamp_file"
    if ! skip_ext; then  # the two extensions build on their own: say which are there
        "$PY" - <<'PYEOF'
import importlib
import torch  # noqa: F401  (the extensions link against it)
for name, what in (('mtu_toolkit._ext', 'motion-compensation ops'),
                   ('mtu_toolkit._conv_cpu', 'CPU convolution engine')):
    try:
        importlib.import_module(name)
        print(f'[install] {name} ({what}): built')
    except ImportError as err:
        print(f'[install] {name} ({what}): NOT built ({err}); its PyTorch fallback runs')
PYEOF
    fi
fi
if [[ $PY == "$MTU_VENV/bin/python" ]]; then
    echo "[install] installed into the project virtual environment .venv/: run the tools with" \
        "'source .venv/bin/activate' first (then 'python tools/...'), or as" \
        "'.venv/bin/python tools/...'"
fi
