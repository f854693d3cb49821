#!/usr/bin/env bash
# Training on a Slurm cluster: srun starts one task per GPU, tools/train.py --launcher slurm.
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
# The variables: tools/slurm_common.sh. DRY_RUN=1 prints the srun command instead.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: [GPUS=8] bash $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]" >&2
    exit 2
fi
source "$(dirname "$0")/slurm_common.sh"
slurm_run train.py "$1" "$2" "$3" --work-dir="$4" --launcher=slurm "${@:5}"
