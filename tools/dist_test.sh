#!/usr/bin/env bash
# Distributed testing with torchrun: bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py args]
# Without CUDA the processes run on CPU and use the gloo backend (NCCL needs GPUs).
# Env: NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON as for the upstream mmdet/mmseg scripts.
set -e
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NUM_PROCS [tools/test.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/dist_launch.sh" test.py "$3" "$1" "$2" "${@:4}"
