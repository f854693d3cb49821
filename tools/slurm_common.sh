# shellcheck shell=bash
# Shared by tools/slurm_train.sh and tools/slurm_test.sh (sourced, not run):
#   slurm_run TOOL PARTITION JOB_NAME [tool arguments]
# runs tools/TOOL under srun, one task per GPU. Variables: GPUS (tasks in all, default 8),
# GPUS_PER_NODE (default: GPUS, at most 8), CPUS_PER_TASK (data loading, default 5), SRUN_ARGS
# (more srun options, split on spaces, e.g. "--quotatype=auto --time=3-0"), MASTER_PORT (the
# rendezvous port, default 29500; another for a second job on a node), PYTHON (default python).
# DRY_RUN=1 prints the srun command (shell-quoted) instead of running it.
positive() {
    if ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
        echo "error: $1 must be a positive integer, got '$2'" >&2
        exit 2
    fi
}

slurm_run() {
    local tool=$1 partition=$2 job_name=$3
    shift 3
    GPUS=${GPUS:-8}
    positive GPUS "$GPUS"
    GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
    positive GPUS_PER_NODE "$GPUS_PER_NODE"
    CPUS_PER_TASK=${CPUS_PER_TASK:-5}
    positive CPUS_PER_TASK "$CPUS_PER_TASK"
    local srun_extra
    read -r -a srun_extra <<< "${SRUN_ARGS:-}"
    local cmd=(srun -p "$partition" --job-name="$job_name" --gres=gpu:"$GPUS_PER_NODE"
               --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE"
               --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1
               # (an empty array under set -u: an error on bash before 4.4, e.g. CentOS 7)
               ${srun_extra[@]+"${srun_extra[@]}"}
               "${PYTHON:-python}" -u "$(dirname "${BASH_SOURCE[0]}")/$tool" "$@")
    if [ "${DRY_RUN:-0}" != 0 ]; then
        printf '%q ' "${cmd[@]}"
        echo
        exit 0
    fi
    exec "${cmd[@]}"
}
