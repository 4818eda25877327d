#!/bin/bash
# The commands behind the README's "Speed and memory" section (CPU, this project's 2-core VM).
# One invocation per group so that the machine's shared lock is taken in pieces; --readme-only
# then merges the runs per device into one table and one plot.
# The tables now in the README: one run of this script (2026-12-03/04, the 2-core AMD EPYC VM,
# commit 0d1323d; written outside the tree, then copied here).
set -e
OUT=docs/benchmark
B="python tools/analysis/benchmark.py --out-dir $OUT"
$B --resolutions 800x1216 --repeat 3 --warmup 1 --name backbones_cpu_800x1216
$B --resolutions 224x224,512x512 --repeat 5 --warmup 2 --name backbones_cpu_224x224_512x512
$B --ops group_mix --repeat 9 --warmup 1 --name ops_cpu_group_mix
for fam in routing neighborhood dual slide; do
  $B --ops $fam --repeat 3 --warmup 1 --name ops_cpu_$fam
done
python tools/analysis/benchmark.py --readme-only --readme README.md --out-dir $OUT \
  --include $OUT/backbones_cpu_224x224_512x512.json $OUT/backbones_cpu_800x1216.json \
  $(for fam in routing neighborhood dual group_mix slide; do echo $OUT/ops_cpu_$fam.json; done)
# The GroupMixFormer mmattn / anchor table of the README:
python tools/analysis/anchor_table.py $OUT/ops_cpu_group_mix.json --anchor straightforward \
  --floor 'projections only (floor)' --floor 'definition kernels (floor)' --target 0.75
