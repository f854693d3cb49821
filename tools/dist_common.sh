# shellcheck shell=bash
# Shared by tools/dist_train.sh and tools/dist_test.sh (sourced, not run):
#   dist_usage MIN_ARGS USAGE "$@"           one line and exit 2 when arguments are missing
#   torchrun_tool TOOL NUM_PROCS [tool arguments]
# runs tools/TOOL --launcher pytorch under torchrun (NCCL on GPUs, gloo on CPU), with the
# Python tools/install.sh set up (or PYTHON). Multi-node: NNODES, NODE_RANK, MASTER_ADDR,
# MASTER_PORT. DRY_RUN=1 prints the command (shell-quoted) instead of running it.
# The workers get SIGTERM when torchrun dies (tools/train.py and test.py ask the kernel for it).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

dist_usage() {
    local min=$1 usage=$2
    shift 2
    if [ "$#" -lt "$min" ]; then
        echo "usage: bash $usage" >&2
        exit 2
    fi
}

torchrun_tool() {
    local tool=$1 nproc=$2
    shift 2
    if ! [[ $nproc =~ ^[1-9][0-9]*$ ]]; then
        echo "error: NUM_PROCS must be a positive integer, got '$nproc'" >&2
        exit 2
    fi
    local cmd=("$PYTHON" -m torch.distributed.run
               --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}"
               --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}"
               --nproc_per_node="$nproc"
               "$(dirname "${BASH_SOURCE[0]}")/$tool" --launcher pytorch "$@")
    if [ "${DRY_RUN:-0}" != 0 ]; then
        printf '%q ' "${cmd[@]}"
        echo
        exit 0
    fi
    "$PYTHON" -c "import torch" 2>/dev/null || {
        echo "no torch in $PYTHON: run bash tools/install.sh first" >&2
        exit 1
    }
    # torchrun's master binds MASTER_PORT on node 0; taken (another job), it fails with a long
    # traceback, so say it in one line first
    if [ "${NODE_RANK:-0}" = 0 ] && ! "$PYTHON" - "${MASTER_PORT:-29500}" <<'PY'
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed job's TIME_WAIT is fine
    try:
        s.bind(('', int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PY
    then
        echo "error: MASTER_PORT ${MASTER_PORT:-29500} is in use (another job?): set MASTER_PORT to a free port" >&2
        exit 1
    fi
    exec "${cmd[@]}"
}
