#!/usr/bin/env bash
# Set-up for a fresh machine: torch (only when none is installed), the runtime requirements and
# the package itself (editable, with the compiled ops of csrc/). Safe and cheap to re-run: the
# package build is skipped while this checkout is installed, its compiled ops import, and
# nothing they are built from (csrc/, setup.py, torch, MTU_SKIP_EXT/FORCE_CUDA) has changed.
# MTU_SKIP_EXT=1 installs without compiling (the ops then fall back to the PyTorch references).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[install] no torch found: installing torch==2.13.0 (CPU build)"
    "$PY" -m pip install -q torch==2.13.0
fi
"$PY" -m pip install -q -r requirements.txt ${MTU_EXTRA_REQUIREMENTS:+-r "$MTU_EXTRA_REQUIREMENTS"}

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
if os.environ.get('MTU_SKIP_EXT', '0') in ('', '0'):
    import torch  # noqa: F401
    importlib.import_module('mtu_toolkit._ext')
PYEOF
}

if [[ -f $stamp_file && $(cat "$stamp_file") == "$fingerprint" ]] && installed_here; then
    echo "[install] mtu_toolkit is installed and its compiled ops are up to date: nothing to build"
else
    echo "[install] installing mtu_toolkit (editable) and compiling its ops (takes a few minutes)"
    "$PY" -m pip install -q --no-build-isolation --no-deps -e .
    mkdir -p build
    echo "$fingerprint" > "$stamp_file.tmp" && mv "$stamp_file.tmp" "$stamp_file"
fi
