# NAT-Tiny + Semantic FPN, ADE20K 80k, 512x512 crops. NOT a paper setting: the NAT/DiNAT papers
# report ADE20K with UPerNet only, so there is no published number. This config uses mmattn's
# Semantic FPN recipe of configs/seg/biformer_fpn.py (the first base: AdamW 2e-4, wd 1e-4, 80k
# iterations, cosine) with the NAT-T backbone of nat_upernet.py.
# Train: python tools/train.py configs/seg/nat_fpn.py
#   (bash tools/dist_train.sh configs/seg/nat_fpn.py 8; add --amp on GPU)
_base_ = ['../_base_/recipes/semfpn_ade20k_80k.py', '../_base_/models/nat.py']

pretrained = _base_.nat.init_cfg.checkpoint

model = dict(
    backbone=dict(_base_.nat, drop_path_rate=0.2),  # mmattn choice: NAT-T's ImageNet value
    neck=dict(in_channels=[64, 128, 256, 512]))
