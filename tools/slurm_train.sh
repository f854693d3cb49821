#!/usr/bin/env bash
# Training on a Slurm cluster: srun starts one task per GPU, tools/train.py --launcher slurm.
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
# GPUS: GPUs (= tasks) in all; GPUS_PER_NODE: per node (default: GPUS, at most 8);
# CPUS_PER_TASK: CPU cores per task (data loading); SRUN_ARGS: more srun options, split on spaces
# (e.g. SRUN_ARGS="--quotatype=auto --time=3-0"); MASTER_PORT: the rendezvous port (default
# 29500; set another for a second job on the same node); PYTHON: the interpreter (default python).
# DRY_RUN=1 prints the srun command (shell-quoted) instead of running it.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: [GPUS=8] bash $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
positive() {
    if ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
        echo "error: $1 must be a positive integer, got '$2'" >&2
        exit 2
    fi
}
GPUS=${GPUS:-8}
positive GPUS "$GPUS"
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
positive GPUS_PER_NODE "$GPUS_PER_NODE"
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
positive CPUS_PER_TASK "$CPUS_PER_TASK"
read -r -a SRUN_EXTRA <<< "${SRUN_ARGS:-}"
CMD=(srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS"
     --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1
     "${SRUN_EXTRA[@]}"
     "${PYTHON:-python}" -u "$(dirname "$0")/train.py" "$CONFIG" --work-dir="$WORK_DIR"
     --launcher=slurm "$@")
if [ "${DRY_RUN:-0}" != 0 ]; then
    printf '%q ' "${CMD[@]}"
    echo
    exit 0
fi
exec "${CMD[@]}"
