#!/usr/bin/env bash
# What slurm_train.sh and slurm_test.sh share:
#   bash tools/slurm_launch.sh SCRIPT PARTITION JOB_NAME [ARGS]
# runs tools/SCRIPT in GPUS srun tasks with --launcher slurm and ARGS (the interface of the
# upstream mmdet/mmseg tools/slurm_*.sh scripts).
# Env (defaults as upstream):
#   GPUS=8            number of tasks (processes) in all, one per GPU
#   GPUS_PER_NODE=8   GPUs (--gres=gpu:N) and tasks per node; 0 on CPU-only nodes: no --gres,
#                     TASKS_PER_NODE tasks per node (unset: Slurm places the GPUS tasks)
#   TASKS_PER_NODE    tasks per node (default GPUS_PER_NODE, none when GPUS_PER_NODE=0)
#   CPUS_PER_TASK=5   --cpus-per-task
#   SRUN_ARGS         more srun options, e.g. "--quotatype=auto" or "--time=1:00:00"
#   PYTHON=python     the interpreter the tasks run
# Without CUDA the tasks run on CPU with the gloo backend (mmattn/utils/cpu_dist.py).
set -e
if [ $# -lt 3 ]; then
    echo "usage: $0 SCRIPT PARTITION JOB_NAME [tools/SCRIPT arguments]" >&2
    exit 2
fi
SCRIPT=$1
PARTITION=$2
JOB_NAME=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

if [ "$GPUS_PER_NODE" = 0 ]; then
    DEVICE_ARGS=()  # CPU-only nodes have no gpu GRES to ask for
    TASKS_PER_NODE=${TASKS_PER_NODE:-}
else
    DEVICE_ARGS=(--gres=gpu:"$GPUS_PER_NODE")
    TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS_PER_NODE}
fi
if [ -n "$TASKS_PER_NODE" ]; then
    DEVICE_ARGS+=(--ntasks-per-node="$TASKS_PER_NODE")
fi

export PYTHONPATH="$ROOT":$PYTHONPATH
set -x
# SRUN_ARGS is split into words on purpose (several srun options in one variable)
# shellcheck disable=SC2086
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    "${DEVICE_ARGS[@]}" \
    --ntasks="$GPUS" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$ROOT/tools/$SCRIPT" "${@:4}" --launcher slurm
