#!/usr/bin/env bash
# What dist_train.sh and dist_test.sh share: bash tools/dist_launch.sh SCRIPT NUM_PROCS [ARGS]
# runs tools/SCRIPT in NUM_PROCS torchrun processes with --launcher pytorch and ARGS.
# Without CUDA the processes run on CPU and use the gloo backend (NCCL needs GPUs).
# Env: NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON as for the upstream mmdet/mmseg scripts.
set -e
SCRIPT=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# Without CUDA, tools/train.py / test.py switch to gloo, DDP without device_ids and BN for SyncBN
# themselves (mmattn/utils/cpu_dist.py); appending a second --cfg-options here would drop the
# user's own (argparse keeps only the last one).

PYTHONPATH="$ROOT":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$ROOT/tools/$SCRIPT" \
    --launcher pytorch "${@:3}"
