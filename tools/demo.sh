#!/usr/bin/env bash
# The README's main command: set up what is missing (tools/install.sh), then run the embedded
# default end to end with the same Python (see tools/env.sh): synthetic-blur data from real
# photographs -> LMDB -> train MTU2 with and without MC -> evaluate.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$MTU_ROOT"
bash tools/install.sh
exec "$PYTHON" tools/demo.py "$@"
