#!/usr/bin/env bash
# The README's test command: set up what is missing (tools/install.sh, with the test
# requirements), then run the tests with the same Python (see tools/env.sh).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$MTU_ROOT"
MTU_EXTRA_REQUIREMENTS=requirements-tests.txt bash tools/install.sh
exec "$PYTHON" -m pytest tests "$@"
