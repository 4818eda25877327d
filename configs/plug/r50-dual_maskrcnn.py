# R-50 Mask R-CNN 1x (mmdet's config) with Dual-ViT's dual-path attention (semantic tokens from
# 7x7 blocks of the map, pixels attend to them) as an mmcv plugin after conv2 of every bottleneck
# in stages 2-4 (residual, zero-initialised output: the ImageNet R-50 from mmdet's init_cfg starts
# unchanged). mmattn's recipe: no paper reports this setting.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        plugins=[
            dict(
                cfg=dict(type='DualAttention2d'),  # heads: one per 32 channels
                stages=(False, True, True, True),
                position='after_conv2')
        ]))
