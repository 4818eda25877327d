# Slide-PVT-S + Mask R-CNN (FPN), COCO 1x: the paper's headline detection setting
# (specs/slide.md §4.3: paper 42.8 box AP / 40.1 mask AP, 42M params, 269G FLOPs). Slide-PVT-S is
# the variant in all three of the paper's PVT tables (ImageNet, Mask R-CNN, Semantic FPN).
# Train: python tools/train.py configs/det/slide_maskrcnn.py
#   (8 GPUs x 2 images: bash tools/dist_train.sh configs/det/slide_maskrcnn.py 8)
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

# No Slide-PVT weights were ever released (§0, §8): pretrain a SlidePVT('small') on ImageNet and
# save its state dict (mmattn names) here. It is read only when training starts (init_weights).
pretrained = 'checkpoints/slide_pvt_small.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='SlidePVT',
        arch='small',  # PVT-S depths 3-4-6-3; slide attention in stages 1-2 (§8, inferred)
        kernel_size=3,  # §2.5: k = 3 in every released model
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,  # mmdet's PVT det configs
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))  # PVT widths

# PVT's detection recipe (mmdet pvt configs): AdamW lr 1e-4, weight decay 1e-4; 1x schedule of
# the base (12 epochs, x0.1 at 8 and 11, batch 16)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))
