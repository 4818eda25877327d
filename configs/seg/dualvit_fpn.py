# Dual-ViT-S + Semantic FPN, ADE20K 80k, 512x512 crops. NOT an official setting: the Dual-ViT
# repo has no Semantic FPN config (only UPerNet), so there is no published number to compare
# with. This config uses mmattn's Semantic FPN recipe of configs/seg/biformer_fpn.py (AdamW 2e-4,
# wd 1e-4, 80k iterations, cosine) with the Dual-ViT-S backbone of dualvit_upernet.py.
# Train: python tools/train.py configs/seg/dualvit_fpn.py
#   (bash tools/dist_train.sh configs/seg/dualvit_fpn.py 8; add --amp on GPU)
_base_ = ['mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', '../_base_/models/dualvit.py']

pretrained = _base_.dualvit.init_cfg.checkpoint

model = dict(
    pretrained=None,  # the base's ResNet 'open-mmlab://resnet50_v1c' would reach the backbone
    backbone=dict(
        _base_.dualvit,
        stem_norm_cfg=dict(type='BN', requires_grad=True),  # as dualvit_upernet.py
        # mmattn choice: whole-image eval (the official UPerNet configs tile the test images)
        test_tile_size=None),
    # stock Semantic FPN: FPN(stages 1-4 -> 256, 4 outputs) + FPNHead(128 channels)
    neck=dict(in_channels=[64, 128, 320, 448]),
    decode_head=dict(num_classes=150))

sync_bn = 'torch'  # as dualvit_upernet.py (official stem SyncBN)

# biformer_fpn.py recipe (not from the Dual-ViT paper): AdamW lr 2e-4, wd 1e-4, no paramwise
# rules; fp16 only via --amp on a GPU (AmpOptimWrapper is CUDA-only).
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001))

# biformer_fpn.py recipe: 80k iterations; linear warmup 1000 iters (ratio 0.1), cosine to
# min_lr_ratio 1e-8; batch 4/GPU x 8 GPUs = 32 (= the base's 4 per GPU)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', T_max=79000, eta_min_ratio=1e-8, begin=1000, end=80000,
         by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=8000))
train_dataloader = dict(batch_size=4)
# Data from the base: RandomResize (2048, 512) ratio 0.5-2.0, RandomCrop 512, flip,
# PhotoMetricDistortion; test Resize (2048, 512) keep ratio, 'whole'.
