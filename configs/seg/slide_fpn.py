# Slide-PVT-S + Semantic FPN, ADE20K, 512x512 crops: the paper's setting (the paper's result
# figure exp_seg.png: 42.47 mIoU / 54.00 mAcc, 26M params, 188G FLOPs).
# Train: python tools/train.py configs/seg/slide_fpn.py
#   (8 GPUs x 2 images: bash tools/dist_train.sh configs/seg/slide_fpn.py 8)
_base_ = ['mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', '../_base_/models/slide.py']

pretrained = _base_.slide_pvt.init_cfg.checkpoint

model = dict(
    pretrained=None,  # the base's ResNet 'open-mmlab://resnet50_v1c' would reach the backbone
    backbone=dict(
        _base_.slide_pvt,
        drop_path_rate=0.1),  # PVT default
    neck=dict(in_channels=[64, 128, 320, 512]),
    decode_head=dict(num_classes=150))

# PVT's Semantic FPN recipe (PVT paper, which Slide-PVT follows): AdamW lr 1e-4, wd 1e-4,
# 40k iterations, poly 0.9, batch 16 (4 GPUs x 4 images as the base)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=4000))
