#!/usr/bin/env bash
# The README's test command: set up what is missing (as tools/install.sh), then run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MTU_EXTRA_REQUIREMENTS=requirements-tests.txt bash tools/install.sh
exec "$PY" -m pytest tests "$@"
