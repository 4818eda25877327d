# Slide-PVT-S + RetinaNet (FPN), COCO 1x. NOT a paper setting: the paper has no RetinaNet results
# (specs/slide.md §4.3). mmdet's PVT-S RetinaNet config with the backbone swapped, so it compares
# directly with mmdet's PVT-S numbers.
# Train: python tools/train.py configs/det/slide_retinanet.py
_base_ = ['mmdet::pvt/retinanet_pvt-s_fpn_1x_coco.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

# No Slide-PVT weights were released: your own ImageNet SlidePVT('small') state dict
pretrained = 'checkpoints/slide_pvt_small.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='SlidePVT',
        arch='small',  # §8 (inferred): PVT-S with slide attention in stages 1-2, k = 3
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,  # mmdet's PVT default
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))
# optimizer (AdamW 1e-4, wd 1e-4) and 1x schedule from the base
