# GroupMixFormer-S + Mask R-CNN (FPN), COCO 1x with multi-scale training. mmattn's settings, NOT
# the authors': the official repository released classification only (detection/detection.md
# says "WIP"), so there is no official config and no published number. This is the recipe of the
# direct ancestor CoaT (mlpc-ucsd/CoaT, mask_rcnn_coat_small_mstrain_480-800_adamw_1x_coco.py):
# AdamW 1e-4, wd 0.05, 12 epochs with steps at 8 and 11, DETR-style multi-scale training.
# Train: python tools/train.py configs/det/groupmixformer_maskrcnn.py
#   (bash tools/dist_train.sh configs/det/groupmixformer_maskrcnn.py 8; add --amp on GPU)
# The base is mmdet's Swin-T ms-crop config: it carries the DETR-style multi-scale pipeline.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    '../_base_/models/groupmixformer.py'
]

pretrained = _base_.groupmixformer.init_cfg.checkpoint

model = dict(
    backbone=dict(_base_.groupmixformer),
    neck=dict(in_channels=[80, 160, 320, 320]))  # FPN in_channels = embedding_dims of S

# CoaT Mask R-CNN recipe: AdamW lr 1e-4, betas (0.9, 0.999), wd 0.05; no decay on norms and
# biases as in the official ImageNet recipe (every 1-D parameter and bias). CoaT trains with
# fp16; mmengine's AmpOptimWrapper is CUDA-only, so pass --amp to tools/train.py on a GPU.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(_delete_=True, norm_decay_mult=0., bias_decay_mult=0.))

# CoaT: 12 epochs, x0.1 at epochs 8 and 11; linear warmup 500 iters (mmdet 1x default)
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1)
]
# Data from the base, equal to CoaT's: flip 0.5 + RandomChoice of (short side 480..800 step
# 32, long <= 1333) or (400/500/600 -> absolute-range crop 384..600 -> 480..800); test Resize
# (1333, 800) keep ratio; pad_size_divisor 32; 2 images/GPU x 8 GPUs = 16.
