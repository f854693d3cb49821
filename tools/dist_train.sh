#!/usr/bin/env bash
# Distributed training with torchrun (DDP; NCCL on GPUs, gloo on CPU):
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT.
set -euo pipefail
source "$(dirname "$0")/dist_common.sh"
dist_usage 2 "tools/dist_train.sh CONFIG NUM_PROCS [train.py options]" "$@"
CONFIG=$1
NPROC=$2
shift 2
torchrun_tool train.py "$NPROC" "$CONFIG" "$@"
