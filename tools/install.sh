#!/usr/bin/env bash
# Set-up for a fresh machine: torch (only when none is installed), the runtime requirements and
# the package itself (editable, with the compiled ops). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[install] no torch found: installing torch==2.13.0 (CPU build)"
    "$PY" -m pip install -q torch==2.13.0
fi
"$PY" -m pip install -q -r requirements.txt ${MTU_EXTRA_REQUIREMENTS:+-r "$MTU_EXTRA_REQUIREMENTS"}
"$PY" -m pip install -q --no-build-isolation --no-deps -e .
