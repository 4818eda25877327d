# Slide-PVT-S + RetinaNet (FPN), COCO 1x. NOT a paper setting: the paper has no RetinaNet results
# (only Mask R-CNN and Cascade Mask R-CNN). mmdet's PVT-S RetinaNet config with the backbone
# swapped, so it compares directly with mmdet's PVT-S numbers.
# Train: python tools/train.py configs/det/slide_retinanet.py
_base_ = ['mmdet::pvt/retinanet_pvt-s_fpn_1x_coco.py', '../_base_/models/slide.py']

pretrained = _base_.slide_pvt.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.slide_pvt,
        drop_path_rate=0.1),  # mmdet's PVT default
    neck=dict(in_channels=[64, 128, 320, 512]))
# optimizer (AdamW 1e-4, wd 1e-4) and 1x schedule from the base
