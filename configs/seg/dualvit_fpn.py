# Dual-ViT-S + Semantic FPN, ADE20K 80k, 512x512 crops. NOT an official setting: the Dual-ViT
# repo has no Semantic FPN config (only UPerNet), so there is no published number to compare
# with. This config uses mmattn's Semantic FPN recipe of configs/seg/biformer_fpn.py (the first
# base: AdamW 2e-4, wd 1e-4, 80k iterations, cosine) with the Dual-ViT-S backbone of
# dualvit_upernet.py.
# Train: python tools/train.py configs/seg/dualvit_fpn.py
#   (bash tools/dist_train.sh configs/seg/dualvit_fpn.py 8; add --amp on GPU)
_base_ = ['../_base_/recipes/semfpn_ade20k_80k.py', '../_base_/models/dualvit.py']

pretrained = _base_.dualvit.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.dualvit,
        stem_norm_cfg=dict(type='BN', requires_grad=True),  # as dualvit_upernet.py
        # mmattn choice: whole-image eval (the official UPerNet configs tile the test images)
        test_tile_size=None),
    neck=dict(in_channels=[64, 128, 320, 448]))

sync_bn = 'torch'  # as dualvit_upernet.py (official stem SyncBN)
