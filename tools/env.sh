# shellcheck shell=bash
# The Python that the project's commands run with; sourced by install.sh, run_tests.sh,
# demo.sh, dist_train.sh and dist_test.sh (bash). Exports it as PYTHON (an absolute path). The
# first of
#   1. PYTHON=... when given;
#   2. python3 of the activated virtual or conda environment (VIRTUAL_ENV / CONDA_PREFIX set);
#   3. .venv/bin/python when the project virtual environment .venv/ exists;
#   4. python3;
# except that an externally managed interpreter (PEP 668: a distribution's own Python, e.g.
# Debian/Ubuntu's /usr/bin/python3, into which pip refuses to install) is replaced by the
# project virtual environment .venv/, made from it when missing. An environment of the user's
# keeps its own packages, torch above all (a CUDA build is never replaced). Never
# --break-system-packages. `bash tools/env.sh` prints the choice (making .venv/ if needed).

set -euo pipefail
MTU_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MTU_VENV=$MTU_ROOT/.venv
# written into a .venv/ that these scripts made, so that only such a one is ever removed
MTU_VENV_MARK=made-by-mtu-toolkit-install

mtu_die() {
    echo "[env] error: $*" >&2
    exit 1
}

mtu_externally_managed() {  # $1: interpreter; true when pip would refuse to install into it
    "$1" - <<'PYEOF'
import os, sys, sysconfig
in_venv = sys.prefix != getattr(sys, 'base_prefix', sys.prefix)  # pip ignores the marker there
marker = os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')
sys.exit(0 if not in_venv and os.path.isfile(marker) else 1)
PYEOF
}

mtu_interpreter() {  # $1: name or path; prints the absolute path of a usable Python 3.9+
    local exe
    exe=$(command -v "$1" 2>/dev/null) || mtu_die "no Python interpreter '$1' found: install" \
        "Python 3.9 or newer, or set PYTHON=/path/to/python"
    "$exe" -c 'import sys; assert sys.version_info >= (3, 9); print(sys.executable)' \
        2>/dev/null || mtu_die "$exe is not a working Python 3.9 or newer; set PYTHON=..."
}

mtu_venv_usable() {
    [[ -x $MTU_VENV/bin/python ]] && "$MTU_VENV/bin/python" -m pip --version >/dev/null 2>&1
}

mtu_venv_present() {  # .venv/ is usable; a broken one that these scripts made is removed
    [[ -e $MTU_VENV ]] || return 1
    mtu_venv_usable && return 0
    [[ -f $MTU_VENV/$MTU_VENV_MARK ]] || mtu_die "$MTU_VENV is not a usable virtual" \
        "environment (no python with pip in it); remove it, or set PYTHON=/path/to/python"
    echo "[env] $MTU_VENV is incomplete (an interrupted set-up): making it again" >&2
    rm -rf "$MTU_VENV"
    return 1
}

mtu_make_venv() {  # $1: the externally managed interpreter that .venv/ is (to be) made from
    local base=$1 pkg
    if mtu_venv_present; then
        [[ $("$MTU_VENV/bin/python" -c 'import sys; print(sys.base_prefix, sys.version_info[:2])') \
            == $("$base" -c 'import sys; print(sys.prefix, sys.version_info[:2])') ]] ||
            mtu_die "$MTU_VENV was made from another Python than $base; remove it" \
                "(rm -rf .venv) to make it again from $base"
        return 0
    fi
    echo "[env] $base is externally managed (PEP 668: pip may not install into it):" \
        "making the project virtual environment $MTU_VENV" >&2
    # a half-made venv is removed whatever stops the creation (a failure, Ctrl-C)
    trap 'rm -rf "$MTU_VENV"' EXIT
    mkdir -p "$MTU_VENV" && touch "$MTU_VENV/$MTU_VENV_MARK"
    if ! "$base" -m venv "$MTU_VENV" >/dev/null 2>&1 || ! mtu_venv_usable; then
        # Debian/Ubuntu ship venv's pip bootstrap (ensurepip) in the python3-venv package
        pkg=$("$base" -c 'import sys; print("python3.%d-venv" % sys.version_info[1])')
        mtu_die "cannot make a virtual environment with $base (no venv/ensurepip): install" \
            "the python3-venv package (sudo apt install python3-venv, or $pkg), or set" \
            "PYTHON to an interpreter pip may install into"
    fi
    trap - EXIT
}

mtu_resolve_python() {
    local py
    if [[ -n ${PYTHON:-} ]]; then
        py=$(mtu_interpreter "$PYTHON")
    elif [[ -n ${VIRTUAL_ENV:-}${CONDA_PREFIX:-} ]] && command -v python3 >/dev/null; then
        py=$(mtu_interpreter python3)  # the activated environment
    elif mtu_venv_present; then
        py=$MTU_VENV/bin/python
    else
        py=$(mtu_interpreter python3)
    fi
    if mtu_externally_managed "$py"; then
        mtu_make_venv "$py"
        py=$MTU_VENV/bin/python
    fi
    PYTHON=$py
    export PYTHON
}

mtu_resolve_python

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then  # run, not sourced: say which Python
    echo "$PYTHON"
fi
