# NAT-Tiny + Semantic FPN, ADE20K 80k, 512x512 crops. NOT a paper setting: the NAT/DiNAT papers
# report ADE20K with UPerNet only, so there is no published number. This config uses mmattn's
# Semantic FPN recipe of configs/seg/biformer_fpn.py (AdamW 2e-4, wd 1e-4, 80k iterations,
# cosine) with the NAT-T backbone of nat_upernet.py.
# Train: python tools/train.py configs/seg/nat_fpn.py
#   (bash tools/dist_train.sh configs/seg/nat_fpn.py 8; add --amp on GPU)
_base_ = ['mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', '../_base_/models/nat.py']

pretrained = _base_.nat.init_cfg.checkpoint

model = dict(
    pretrained=None,  # the base's ResNet 'open-mmlab://resnet50_v1c' would reach the backbone
    backbone=dict(
        _base_.nat,
        drop_path_rate=0.2),  # mmattn choice: NAT-T's ImageNet value
    # stock Semantic FPN: FPN(levels 0..3 -> 256, 4 outputs) + FPNHead(128 channels)
    neck=dict(in_channels=[64, 128, 256, 512]),
    decode_head=dict(num_classes=150))

# biformer_fpn.py recipe (not from the NAT papers): AdamW lr 2e-4, wd 1e-4, no paramwise
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
