#!/usr/bin/env bash
# Distributed testing with torchrun (NCCL on GPUs, gloo on CPU):
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT.
set -euo pipefail
source "$(dirname "$0")/dist_common.sh"
dist_usage 3 "tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options]" "$@"
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
torchrun_tool test.py "$NPROC" "$CONFIG" "$CHECKPOINT" "$@"
