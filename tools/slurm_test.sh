#!/usr/bin/env bash
# Testing on a Slurm cluster: srun starts one task per GPU, tools/test.py --launcher slurm.
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# (e.g. --work-dir DIR --out-dir DIR). The variables: tools/slurm_common.sh. DRY_RUN=1 prints
# the srun command instead.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: [GPUS=8] bash $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]" >&2
    exit 2
fi
source "$(dirname "$0")/slurm_common.sh"
slurm_run test.py "$1" "$2" "$3" "$4" --launcher=slurm "${@:5}"
