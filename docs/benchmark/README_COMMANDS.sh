#!/bin/bash
# The commands behind the README's "Speed and memory" section (CPU, this project's 2-core VM).
# One invocation per group so that the machine's shared lock is taken in pieces; --readme-only
# then merges the runs per device into one table and one plot.
# Backbones and group_mix: commit 9acc360 ("9acc360+" in the JSON: only README.md was being
# edited during the runs), one after the other with nothing else running, 2026-12-03.
# routing, neighborhood, dual, slide: their earlier runs (commits 7913be6+, 42766c3+; the ops
# have not changed since), on the Intel machine of that session.
set -e
OUT=docs/benchmark
B="python tools/analysis/benchmark.py --out-dir $OUT"
$B --resolutions 800x1216 --repeat 3 --warmup 1 --name backbones_cpu_800x1216
$B --resolutions 224x224,512x512 --repeat 5 --warmup 2 --name backbones_cpu_224x224_512x512
$B --ops group_mix --repeat 5 --warmup 1 --name ops_cpu_group_mix
# (earlier) for fam in routing neighborhood dual slide; do
#   $B --warmup 1 --repeat 3 --ops $fam --name ops_cpu_$fam; done
python tools/analysis/benchmark.py --readme-only --readme README.md --out-dir $OUT \
  --include $OUT/backbones_cpu_224x224_512x512.json $OUT/backbones_cpu_800x1216.json \
  $(for fam in routing neighborhood dual group_mix slide; do echo $OUT/ops_cpu_$fam.json; done)
