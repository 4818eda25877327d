# NAT-Tiny + RetinaNet (FPN), COCO 1x. NOT a paper setting: the NAT/DiNAT papers and repo have
# no RetinaNet (only Mask R-CNN and Cascade Mask R-CNN), so there is no published number to
# compare with. This config uses mmattn's COCO RetinaNet 1x recipe of
# configs/det/biformer_retinanet.py (AdamW 1e-4, wd 1e-4, 12 epochs, single-scale 1333x800) with
# the NAT-T backbone of nat_maskrcnn.py.
# Train: python tools/train.py configs/det/nat_retinanet.py
#   (bash tools/dist_train.sh configs/det/nat_retinanet.py 8; add --amp on GPU)
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../_base_/models/nat.py']

pretrained = _base_.nat.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.nat,
        drop_path_rate=0.2),  # mmattn choice: NAT-T's official Mask R-CNN value
    neck=dict(
        in_channels=[64, 128, 256, 512],  # NAT-T level widths
        start_level=1,  # stock RetinaNet: P3-P7 from levels 1-3
        add_extra_convs='on_input'))  # stock RetinaNet

# level-0 output and its norm0 feed nothing (start_level=1) -> DDP needs this
find_unused_parameters = True

# biformer_retinanet.py recipe (not from the NAT papers): AdamW lr 1e-4, wd 1e-4.
# fp16 only via --amp on a GPU (AmpOptimWrapper is CUDA-only).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))

# Schedule and data from the base: 12 epochs, linear warmup 500 iters (0.001), x0.1 at 8 and
# 11; Resize (1333, 800) keep ratio, flip 0.5; 2 images/GPU x 8 GPUs = 16.
