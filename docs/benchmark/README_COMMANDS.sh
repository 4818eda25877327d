#!/bin/bash
# The measurements behind docs/benchmarks.md (CPU), run from the repository root:
#
#     bash docs/benchmark/README_COMMANDS.sh
#
# One benchmark.py invocation per group, each writing its table, JSON and plot to
# docs/benchmark/ (so that a long CPU run holds a shared machine in pieces); --docs-only then
# merges the runs per device into the generated block of docs/benchmarks.md, measuring nothing.
# Each table's caption names the machine, date and commit its run measured. On a GPU, add
# --device cuda to the measuring lines. Expect hours on a 2-core CPU.
set -e
OUT=docs/benchmark
B="python tools/analysis/benchmark.py --out-dir $OUT"
$B --resolutions 800x1216 --repeat 3 --warmup 1 --name backbones_cpu_800x1216
$B --resolutions 224x224,512x512 --repeat 5 --warmup 2 --name backbones_cpu_224x224_512x512
$B --backbones BiFormer:small,Swin-T --resolutions 800x1216 --repeat 3 --warmup 1 \
  --name backbones_cpu_800x1216_biformer
$B --compile --backbones NAT:tiny,DiNAT:tiny --resolutions 512x512,800x1216 --repeat 3 \
  --warmup 1 --name deploy_cpu_nat
# every op module of mmattn.ops that declares bench_cases (what benchmark.py --ops all runs)
OPS=$(python -c 'from mmattn.ops import op_specs; print(*op_specs())')
for op in $OPS; do
  repeat=3
  # group_mix: 9 rounds, for the mmattn / anchor table of docs/speed.md (last line)
  if [ "$op" = group_mix ]; then repeat=9; fi
  $B --ops "$op" --repeat $repeat --warmup 1 --name "ops_cpu_$op"
done
python tools/analysis/benchmark.py --docs-only --docs docs/benchmarks.md --out-dir $OUT \
  --include $OUT/backbones_cpu_224x224_512x512.json $OUT/backbones_cpu_800x1216.json \
  $OUT/backbones_cpu_800x1216_biformer.json \
  $(for op in $OPS; do echo "$OUT/ops_cpu_$op.json"; done)
# GroupMixFormer's mmattn / anchor table in docs/speed.md, from the group_mix run:
python tools/analysis/anchor_table.py $OUT/ops_cpu_group_mix.json --anchor straightforward \
  --floor 'projections only (floor)' --floor 'definition kernels (floor)' --target 0.75
