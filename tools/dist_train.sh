#!/usr/bin/env bash
# Distributed training with torchrun: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args]
# e.g. bash tools/dist_train.sh configs/det/biformer_maskrcnn.py 8 --work-dir work_dirs/x
# Without CUDA the processes run on CPU and use the gloo backend (NCCL needs GPUs).
# Env: NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON as for the upstream mmdet/mmseg scripts.
set -e
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_PROCS [tools/train.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/dist_launch.sh" train.py "$2" "$1" "${@:3}"
