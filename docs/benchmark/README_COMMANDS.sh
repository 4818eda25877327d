#!/bin/bash
# The commands behind the README's "Speed and memory" section (CPU, this project's 2-core VM).
# One invocation per resolution / group so that the machine's shared lock is taken in pieces;
# --readme-only then merges the runs per device into one table and one plot.
set -e
OUT=docs/benchmark
B="python tools/analysis/benchmark.py --threads 2 --out-dir $OUT"
# (224x224 was run last, a second time: the first run overlapped an edit of another backbone)
for res in 224x224 512x512; do
  $B --warmup 2 --repeat 5 --resolutions $res --name backbones_cpu_$res
done
i=0
for group in "BiFormer:small,DualViT:small,GroupMixFormer:small" "NAT:tiny,DiNAT:tiny,SlideSwin:tiny" \
             "SlidePVT:small,Swin-T,PVTv2-B2"; do
  i=$((i+1))
  $B --warmup 1 --repeat 3 --resolutions 800x1216 --backbones $group --name backbones_cpu_800x1216_$i
done
# GroupMixFormer and Slide again after their op speed-ups (commits 3995608, c4d0a50, 529174d);
# in the merge below these later runs replace their earlier rows
G=GroupMixFormer:small,SlideSwin:tiny,SlidePVT:small
for res in 224x224 512x512; do
  $B --warmup 2 --repeat 5 --resolutions $res --backbones $G --name backbones_cpu_${res}_fastops
done
$B --warmup 1 --repeat 3 --resolutions 800x1216 --backbones $G --name backbones_cpu_800x1216_fastops
for fam in routing neighborhood dual group_mix slide; do
  $B --warmup 1 --repeat 3 --ops $fam --name ops_cpu_$fam
done
python tools/analysis/benchmark.py --readme-only --readme README.md --out-dir $OUT \
  --include $OUT/backbones_cpu_224x224.json $OUT/backbones_cpu_512x512.json \
  $OUT/backbones_cpu_800x1216_1.json $OUT/backbones_cpu_800x1216_2.json \
  $OUT/backbones_cpu_800x1216_3.json $OUT/backbones_cpu_224x224_fastops.json \
  $OUT/backbones_cpu_512x512_fastops.json $OUT/backbones_cpu_800x1216_fastops.json \
  $(for fam in routing neighborhood dual group_mix slide; do echo $OUT/ops_cpu_$fam.json; done)  # README order
