#!/usr/bin/env bash
# The README's test command: set up what is missing (tools/install.sh, with the test
# requirements), then run the tests with the same Python (see tools/env.sh).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$MTU_ROOT"
MTU_EXTRA_REQUIREMENTS=requirements-tests.txt bash tools/install.sh
# two test files at a time where there are two cores (pytest-xdist; a file's tests stay in one
# worker, so its module fixtures are built once): much of the suite keeps one core busy (a tool
# starting, a one-thread training), so two at a time take about 0.6 of the time (README).
# `-n 0` after the command runs one file at a time.
parallel=()
if [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ]; then parallel=(-n 2 --dist loadfile); fi
exec "$PYTHON" -m pytest tests ${parallel[@]+"${parallel[@]}"} "$@"
