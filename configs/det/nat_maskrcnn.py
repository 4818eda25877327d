# NAT-Tiny + Mask R-CNN (FPN), COCO 3x with multi-scale training: the paper's setting (official
# detection configs of SHI-Labs/Neighborhood-Attention-Transformer; paper: 47.7 box AP / 42.6
# mask AP, 48M params, 258G FLOPs).
# Train: python tools/train.py configs/det/nat_maskrcnn.py   (16 images per iteration in the
#   paper: bash tools/dist_train.sh configs/det/nat_maskrcnn.py 8; add --amp on GPU, see below)
# The base is mmdet's Swin-T 3x config: it carries the DETR-style multi-scale AutoAugment
# pipeline the official NAT configs use and the 36-epoch step schedule.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py', '../_base_/models/nat.py']

pretrained = _base_.nat.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.nat,
        drop_path_rate=0.2,  # official Mask R-CNN NAT-T: 0.2
        frozen_stages=-1),  # official: no frozen stage
    neck=dict(in_channels=[64, 128, 256, 512]))  # NAT-T level widths

# official: AdamW lr 1e-4, betas (0.9, 0.999), wd 0.05, no decay for 'rpb' and 'norm' parameters
# (substring match: attn.rpb, norm1/norm2, patch_embed/downsample norms, norm0..3), no clipping.
# The paper trains with fp16 (Fp16OptimizerHook); mmengine's AmpOptimWrapper is CUDA-only, so
# this config keeps OptimWrapper: pass --amp to tools/train.py on a GPU.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        _delete_=True, custom_keys={
            'rpb': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))

# official "3x": 36 epochs, linear warmup 500 iters (ratio 0.001; Swin's base uses 1000), x0.1 at
# epochs 27 and 33
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1)
]
# Data and batch from the base, equal to the official ones: flip 0.5 + RandomChoice of (short
# side 480..800 step 32, long <= 1333) or (400/500/600 -> absolute-range crop 384..600 ->
# 480..800); test Resize (1333, 800) keep ratio; 2 images/GPU x 8 GPUs = 16 (auto_scale_lr 16).
