#!/usr/bin/env bash
# `make test-slurm`: tools/slurm_train.sh and tools/slurm_test.sh on a real one-node Slurm
# started here on localhost (Debian's slurm-wlm + munge, installed with apt-get if absent).
#
#  1. munged, slurmctld and slurmd start from a temporary folder (their own key, socket, ports,
#     state and logs; nothing under /etc is changed): one node with 2 CPUs, partition "debug".
#  2. GPUS=2 GPUS_PER_NODE=0 tools/slurm_train.sh: 2 srun tasks train the demo BiFormer UPerNet
#     for 5 iterations on the synthetic ADE20K set (gloo, CPUSyncBN), 1 image per task (2
#     iterations per pass over the 4 images) -> iter_3.pth, iter_5.pth.
#  3. tools/slurm_test.sh: 2 tasks evaluate iter_5.pth, the metric is printed once.
#  4. Requeue after preemption: the same training as a batch job (sbatch --requeue) whose
#     script runs tools/slurm_train.sh with --resume; `scontrol requeue` kills it after its
#     iteration-3 checkpoint (mid-pass), Slurm starts it again, it resumes and ends with the
#     losses of iterations 4-5 and the iter_5.pth weights of step 2.
#
# Needs root (or sudo) for apt-get and the daemons. The trap stops every daemon it started and
# removes the folder (KEEP=1 keeps it; its path is printed). Env: PYTHON (default .venv/bin/python).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
say() { echo "[test-slurm] $*"; }
fail() { echo "[test-slurm] FAILED: $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || fail "needs root (apt-get, munged, slurmd) and sudo is absent"
    exec sudo -E PYTHON="$PYTHON" KEEP="${KEEP:-}" bash "$0" "$@"
fi

# ------------------------------------------------------------------ packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v srun >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null \
        || { apt-get update >/dev/null && \
             apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null; } \
        || fail "apt-get install slurm-wlm munge"
fi
say "$(slurmctld -V), munge $(munged --version 2>&1 | awk '{print $2}')"

# ------------------------------------------------------------------ daemons
TMP=$(mktemp -d /tmp/mmattn-slurm.XXXXXX)
chmod 711 "$TMP"  # munged wants its socket path searchable
PIDS=()
cleanup() {
    local rc=$?
    if [ -n "${SLURM_CONF:-}" ] && [ -f "$SLURM_CONF" ]; then
        scancel --full --quiet -u root >/dev/null 2>&1 || true
    fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do  # slurmd, slurmctld, munged
        kill "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ $rc != 0 ]; then
        for log in slurmctld.log slurmd.log munged.log; do
            [ -f "$TMP/$log" ] && { echo "--- $log (tail)"; tail -n 15 "$TMP/$log"; }
        done
    fi
    if [ -n "${KEEP:-}" ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
    say "daemons stopped"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HOST=$(hostname -s)
mkdir -p "$TMP/state" "$TMP/spool" "$TMP/munge"
mungekey --create --keyfile="$TMP/munge/munge.key" 2>/dev/null \
    || { dd if=/dev/urandom of="$TMP/munge/munge.key" bs=1024 count=1 status=none; }
chmod 400 "$TMP/munge/munge.key"
munged --foreground --force --socket="$TMP/munge/munge.socket" \
    --key-file="$TMP/munge/munge.key" --pid-file="$TMP/munge/munged.pid" \
    --log-file="$TMP/munged.log" --seed-file="$TMP/munge/munged.seed" >"$TMP/munged.out" 2>&1 &
PIDS+=($!)

export SLURM_CONF="$TMP/slurm.conf"
cat > "$SLURM_CONF" <<EOF
ClusterName=mmattn
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$TMP/munge/munge.socket
CredType=cred/munge
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/slurmctld.log
SlurmdLogFile=$TMP/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SchedulerParameters=nohold_on_prolog_fail
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
for _ in $(seq 50); do [ -S "$TMP/munge/munge.socket" ] && break; sleep 0.1; done
slurmctld -D -c -f "$SLURM_CONF" > "$TMP/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" > "$TMP/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 60); do
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 1
done
[ "$state" = idle ] || fail "node not idle after 60 s (sinfo: '${state}')"
say "slurmctld + slurmd up: $(sinfo -h -o '%P %D node, %c CPUs, %t')"

# ------------------------------------------------------------------ data, config
cd "$TMP"
"$PYTHON" "$ROOT/tools/make_synthetic.py" --out "$TMP/data" --num-train 4 --num-val 2 \
    --only ade20k >/dev/null
ADE="$TMP/data/ade20k"
CONFIG="$ROOT/configs/demo/biformer_upernet_synthetic.py"
OPTIONS=(--cfg-options "train_dataloader.dataset.data_root=$ADE"
         "val_dataloader.dataset.data_root=$ADE" "test_dataloader.dataset.data_root=$ADE"
         train_dataloader.batch_size=1 train_cfg.max_iters=5 train_cfg.val_begin=100
         default_hooks.checkpoint.interval=3 default_hooks.checkpoint.max_keep_ckpts=5
         default_hooks.logger.interval=1 log_processor.window_size=1 randomness.seed=0
         randomness.deterministic=True)
export PYTHON GPUS=2 GPUS_PER_NODE=0 CPUS_PER_TASK=1 OMP_NUM_THREADS=1
losses() {  # "iter loss" lines of the newest run in a work dir
    "$PYTHON" - "$1" <<'PY'
import glob, json, sys
runs = sorted(glob.glob(f'{sys.argv[1]}/*/vis_data/scalars.json'))
for line in open(runs[-1]):
    row = json.loads(line)
    if 'loss' in row:
        print(row['iter'], row['loss'])
PY
}

# ------------------------------------------------------------------ 2. train
say "tools/slurm_train.sh: 2 tasks, 5 iterations"
start=$SECONDS
timeout 600 bash "$ROOT/tools/slurm_train.sh" debug mmattn-train "$CONFIG" "$TMP/work" \
    "${OPTIONS[@]}" > "$TMP/train.log" 2>&1 || { tail -n 30 "$TMP/train.log"; fail "training"; }
grep -q 'CPUSyncBN' "$TMP/train.log" || fail "no CPUSyncBN in the training log"
grep -q "Iter(train) \[5/5\]" "$TMP/train.log" || fail "iteration 5 not logged"
ckpts=$(cd "$TMP/work" && ls ./*.pth | tr '\n' ' ')
[ "$ckpts" = "./iter_3.pth ./iter_5.pth " ] || fail "checkpoints: $ckpts"
say "trained in $((SECONDS - start)) s: $ckpts"

# ------------------------------------------------------------------ 3. test
say "tools/slurm_test.sh: 2 tasks"
start=$SECONDS
timeout 600 bash "$ROOT/tools/slurm_test.sh" debug mmattn-test "$CONFIG" "$TMP/work/iter_5.pth" \
    --work-dir "$TMP/test" "${OPTIONS[@]}" > "$TMP/test.log" 2>&1 \
    || { tail -n 30 "$TMP/test.log"; fail "testing"; }
[ "$(grep -c 'mIoU:' "$TMP/test.log")" = 1 ] || fail "mIoU not printed exactly once"
say "tested in $((SECONDS - start)) s: $(grep -o 'mIoU: [0-9.]*' "$TMP/test.log")"

# ------------------------------------------------------------------ 4. requeue + --resume
say "sbatch --requeue, scontrol requeue after the iteration-3 checkpoint, --resume"
start=$SECONDS
cat > "$TMP/job.sh" <<EOF
#!/bin/bash
echo "[job] start \$(date +%T), restart count \${SLURM_RESTART_COUNT:-0}"
exec bash "$ROOT/tools/slurm_train.sh" debug mmattn-requeue "$CONFIG" "$TMP/requeued" --resume \
    $(printf '%q ' "${OPTIONS[@]}")
EOF
job=$(sbatch --parsable --requeue --ntasks=2 --cpus-per-task=1 --output="$TMP/job-%j.log" \
    --open-mode=append "$TMP/job.sh")
for _ in $(seq 1200); do [ -f "$TMP/requeued/iter_3.pth" ] && break; sleep 0.5; done
[ -f "$TMP/requeued/iter_3.pth" ] || fail "no iteration-3 checkpoint of job $job"
scontrol requeue "$job"
requeued=$SECONDS
# a requeued job waits for a new begin time (136 s from the requeue to running again, measured
# with Slurm 22.05 on a 2-core VM); let it start now
for _ in $(seq 60); do
    [ "$(squeue -h -j "$job" -o %T 2>/dev/null)" = PENDING ] && break
    sleep 0.5
done
scontrol update JobId="$job" StartTime=now || true
for _ in $(seq 1200); do
    [ "$(squeue -h -j "$job" -o %T 2>/dev/null)" = RUNNING ] && break
    sleep 0.5
done
say "job $job requeued at iteration 3, running again after $((SECONDS - requeued)) s"
for _ in $(seq 1200); do
    state=$(squeue -h -j "$job" -o %T 2>/dev/null || true)
    [ -z "$state" ] && break
    sleep 0.5
done
[ -z "$state" ] || fail "job $job still $state after 10 min"
log="$TMP/job-$job.log"
grep -q 'restart count 1' "$log" || { tail -n 30 "$log"; fail "job $job did not run again"; }
grep -q 'resumed epoch: 0, iter: 3' "$log" || { tail -n 30 "$log"; fail "no resume from iter 3"; }
[ -f "$TMP/requeued/iter_5.pth" ] || { tail -n 30 "$log"; fail "no iteration-5 checkpoint"; }
losses "$TMP/work" | sed -n '4,5p' > "$TMP/expected.txt"
losses "$TMP/requeued" > "$TMP/got.txt"
diff "$TMP/expected.txt" "$TMP/got.txt" >/dev/null \
    || fail "losses after the requeue: $(tr '\n' ' ' < "$TMP/got.txt") vs $(tr '\n' ' ' < "$TMP/expected.txt")"
"$PYTHON" - "$TMP/work/iter_5.pth" "$TMP/requeued/iter_5.pth" <<'PY' || fail "iter_5.pth weights differ"
import sys
import torch
import mmattn  # noqa: F401  (checkpoint allow-list)
a, b = (torch.load(p, map_location='cpu')['state_dict'] for p in sys.argv[1:])
assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
PY
say "requeued job resumed exactly in $((SECONDS - start)) s: losses $(tr '\n' ' ' < "$TMP/got.txt")"
say "passed"
