# BiFormer-S + RetinaNet (FPN), COCO 1x: the paper's setting (official object_detection configs
# of rayleizhu/BiFormer; paper 45.9 box AP).
# Train: python tools/train.py configs/det/biformer_retinanet.py   (8 GPUs x 2 images in the paper:
#   bash tools/dist_train.sh configs/det/biformer_retinanet.py 8; add --amp on GPU, see below)
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../_base_/models/biformer.py']

pretrained = _base_.biformer.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.biformer,
        n_win=16,  # official COCO configs: 16x16 regions
        drop_path_rate=0.2,  # official COCO configs: S 0.2, B 0.3
        norm_eval=True),  # official COCO configs: stem/downsample BN in eval mode while training
    neck=dict(
        in_channels=[64, 128, 256, 512],  # BiFormer-S stage widths
        start_level=1,  # official: P3-P7 from stages 2-4 (as the stock RetinaNet)
        add_extra_convs='on_input'))  # official

# stage 1 output and its norm0 feed nothing (start_level=1) -> DDP needs this (set officially too)
find_unused_parameters = True

# Official RetinaNet recipe (WaveViT's): AdamW lr 1e-4, wd 1e-4, default betas, no paramwise rules.
# The paper trains with AMP (fp16, static loss scale 512); mmengine's AmpOptimWrapper is
# CUDA-only, so this config keeps OptimWrapper: pass --amp to tools/train.py on a GPU.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))

# Schedule from the base, unchanged and equal to the official one: 12 epochs, linear warmup 500
# iters (start factor 0.001), step x0.1 at epochs 8 and 11; batch 2/GPU x 8 GPUs = 16 images
# (auto_scale_lr.base_batch_size=16: use --auto-scale-lr with another total batch).
# Data from the base, equal to the official pipeline: Resize (1333, 800) keep ratio, flip 0.5,
# pad to 32.
