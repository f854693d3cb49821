#!/usr/bin/env bash
# Distributed training with torchrun (DDP; NCCL on GPUs, gloo on CPU):
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT.
set -euo pipefail
CONFIG=$1
NPROC=$2
shift 2
source "$(dirname "$0")/env.sh"  # PYTHON=..., else the environment tools/install.sh set up
"$PYTHON" -c "import torch" 2>/dev/null || {
    echo "no torch in $PYTHON: run bash tools/install.sh first" >&2
    exit 1
}
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "$@"
