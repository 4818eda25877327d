# R-50 Mask R-CNN 1x (mmdet's config) with BiFormer's bi-level routing attention as an mmcv plugin
# after conv2 of every bottleneck in stages 2-4. The blocks are residual with a zero-initialised
# output projection, so the ImageNet R-50 (init_cfg kept from mmdet) starts exactly unchanged.
# mmattn's recipe: no paper reports this setting.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        plugins=[
            dict(
                # n_win=7, topk=4: the BiFormer paper's stage-2 routing (7x7 regions, 4 routed)
                cfg=dict(type='BiLevelRoutingAttention2d', n_win=7, topk=4),
                stages=(False, True, True, True),
                position='after_conv2')
        ]))
