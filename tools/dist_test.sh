#!/usr/bin/env bash
# Distributed testing with torchrun (NCCL on GPUs, gloo on CPU):
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT.
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
source "$(dirname "$0")/env.sh"  # PYTHON=..., else the environment tools/install.sh set up
"$PYTHON" -c "import torch" 2>/dev/null || {
    echo "no torch in $PYTHON: run bash tools/install.sh first" >&2
    exit 1
}
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$(dirname "$0")/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
