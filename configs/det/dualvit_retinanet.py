# Dual-ViT-S + RetinaNet (FPN), COCO 1x: the official setting (object_detection configs of
# YehLi/ImageNetModel; official README: 46.2 box AP).
# Train: python tools/train.py configs/det/dualvit_retinanet.py   (8 GPUs x 2 images officially:
#   bash tools/dist_train.sh configs/det/dualvit_retinanet.py 8; add --amp on GPU, see below)
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../_base_/models/dualvit.py']

pretrained = _base_.dualvit.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.dualvit,
        # official mmdet stem: BN with its affine frozen, running statistics still updating
        stem_norm_cfg=dict(type='BN', requires_grad=False)),
    neck=dict(
        in_channels=[64, 128, 320, 448],  # Dual-ViT-S stage widths
        start_level=1,  # official: P3-P7 from stages 2-4
        add_extra_convs='on_input'))  # official

# official: find_unused_parameters=True (stage 1 output feeds nothing: start_level=1)
find_unused_parameters = True

# official: AdamW lr 1e-4, wd 1e-4, no paramwise rules. Officially fp16 (loss scale 512);
# mmengine's AmpOptimWrapper is CUDA-only, so this config keeps OptimWrapper: pass --amp to
# tools/train.py on a GPU.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))

# Schedule from the base, equal to the official one: 12 epochs, linear warmup 500 iters (ratio
# 0.001), x0.1 at epochs 8 and 11; batch 2/GPU x 8 GPUs = 16 (auto_scale_lr base 16).
# Data from the base, equal to the official pipeline: Resize (1333, 800) keep ratio, flip 0.5.
