# R-50 RetinaNet 1x (mmdet's config) with NAT's 7x7 neighborhood attention as an mmcv plugin after
# conv2 of every bottleneck in stages 2-4 (residual, zero-initialised output: the ImageNet R-50
# from mmdet's init_cfg starts unchanged). mmattn's recipe: no paper reports this setting.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        plugins=[
            dict(
                cfg=dict(type='NeighborhoodAttention2d', kernel_size=7, dilation=1),  # NAT's K
                stages=(False, True, True, True),
                position='after_conv2')
        ]))
