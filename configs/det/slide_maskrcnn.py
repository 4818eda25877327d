# Slide-PVT-S + Mask R-CNN (FPN), COCO 1x: the paper's headline detection setting (the paper's
# result figure exp_det.png: 42.8 box AP / 40.1 mask AP, 42M params, 269G FLOPs). Slide-PVT-S is
# the variant in all three of the paper's PVT tables (ImageNet, Mask R-CNN, Semantic FPN).
# Train: python tools/train.py configs/det/slide_maskrcnn.py
#   (8 GPUs x 2 images: bash tools/dist_train.sh configs/det/slide_maskrcnn.py 8)
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', '../_base_/models/slide.py']

pretrained = _base_.slide_pvt.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.slide_pvt,
        kernel_size=3,  # k = 3 in every released model
        drop_path_rate=0.1),  # mmdet's PVT det configs
    neck=dict(in_channels=[64, 128, 320, 512]))  # PVT widths

# PVT's detection recipe (mmdet pvt configs): AdamW lr 1e-4, weight decay 1e-4; 1x schedule of
# the base (12 epochs, x0.1 at 8 and 11, batch 16)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))
