#!/usr/bin/env bash
# The README's main command: set up what is missing, then run the embedded default end to end
# (synthetic-blur data from real footage -> LMDB -> train MTU2 with and without MC -> evaluate).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash tools/install.sh
exec "$PY" tools/demo.py "$@"
