# Dual-ViT-S + Mask R-CNN (FPN), COCO 1x: the official setting (object_detection configs of
# YehLi/ImageNetModel; official README: 46.5 box AP / 42.2 mask AP).
# Train: python tools/train.py configs/det/dualvit_maskrcnn.py   (8 GPUs x 2 images officially:
#   bash tools/dist_train.sh configs/det/dualvit_maskrcnn.py 8; add --amp on GPU, see below)
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', '../_base_/models/dualvit.py']

pretrained = _base_.dualvit.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.dualvit,
        # official mmdet stem: BN with its affine frozen, running statistics still updating
        stem_norm_cfg=dict(type='BN', requires_grad=False)),
    neck=dict(in_channels=[64, 128, 320, 448]))  # Dual-ViT-S stage widths, all 4 levels

find_unused_parameters = True  # as in the official configs

# official: AdamW lr 2e-4, wd 1e-4, no paramwise rules. Officially fp16 (loss scale 512);
# mmengine's AmpOptimWrapper is CUDA-only, so this config keeps OptimWrapper: pass --amp to
# tools/train.py on a GPU.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0002, weight_decay=0.0001))

# Schedule from the base, equal to the official one: 12 epochs, linear warmup 500 iters (ratio
# 0.001), x0.1 at epochs 8 and 11; batch 2/GPU x 8 GPUs = 16 (auto_scale_lr base 16).
# Data from the base, equal to the official pipeline: Resize (1333, 800) keep ratio, flip 0.5.
