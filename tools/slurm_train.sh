#!/usr/bin/env bash
# Training under Slurm, with the interface of the upstream mmdet/mmseg script:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options]
# e.g. GPUS=16 bash tools/slurm_train.sh gpu biformer configs/det/biformer_maskrcnn.py work_dirs/b
# CPU-only nodes: GPUS_PER_NODE=0 (no --gres); GPUS is then the number of processes. The
# variables are described in tools/slurm_launch.sh. A requeued job continues with --resume.
set -e
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/slurm_launch.sh" train.py "$1" "$2" "$3" --work-dir="$4" "${@:5}"
