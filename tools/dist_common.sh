# Shared by tools/dist_train.sh and tools/dist_test.sh (sourced, not run):
#   torchrun_tool TOOL NUM_PROCS [tool arguments]
# runs tools/TOOL --launcher pytorch under torchrun (NCCL on GPUs, gloo on CPU), with the
# Python tools/install.sh set up (or PYTHON). Multi-node: NNODES, NODE_RANK, MASTER_ADDR,
# MASTER_PORT. DRY_RUN=1 prints the command (shell-quoted) instead of running it.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

torchrun_tool() {
    local tool=$1 nproc=$2
    shift 2
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
    exec "${cmd[@]}"
}
