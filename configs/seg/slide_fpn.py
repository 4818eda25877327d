# Slide-PVT-S + Semantic FPN, ADE20K, 512x512 crops: the paper's setting (the paper's result
# figure exp_seg.png: 42.47 mIoU / 54.00 mAcc, 26M params, 188G FLOPs) with PVT's recipe, which
# the paper follows (the first base; batch 16 = 4 GPUs x 4 images as the base).
# Train: python tools/train.py configs/seg/slide_fpn.py
#   (8 GPUs x 2 images: bash tools/dist_train.sh configs/seg/slide_fpn.py 8)
_base_ = ['../_base_/recipes/semfpn_ade20k_40k.py', '../_base_/models/slide.py']

pretrained = _base_.slide_pvt.init_cfg.checkpoint

model = dict(
    backbone=dict(_base_.slide_pvt, drop_path_rate=0.1),  # PVT default
    neck=dict(in_channels=[64, 128, 320, 512]))
