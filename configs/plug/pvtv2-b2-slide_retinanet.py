# PVTv2-B2 RetinaNet 1x (mmdet's config) whose spatial-reduction attention in stages 1-2 is
# replaced by Slide-Transformer's 3x3 slide attention (mmattn.AttentionSwap), the way
# Slide-PVT replaces it in the high-resolution stages. Everything else loads from the stock
# PVTv2-B2 ImageNet checkpoint (key accounting in the log). mmattn's recipe: no paper reports
# this setting (Slide-PVT is built on PVT v1, see configs/det/slide_maskrcnn.py).
_base_ = ['mmdet::pvt/retinanet_pvtv2-b2_fpn_1x_coco.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='AttentionSwap',
        backbone=dict(
            type='mmdet.PyramidVisionTransformerV2',
            embed_dims=64,
            num_layers=[3, 4, 6, 3],
            init_cfg=dict(
                type='Pretrained',
                checkpoint='https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth')),
        stages=(0, 1),
        attn=dict(type='SlideAttention2d', kernel_size=3)))  # heads: PVTv2's 1 / 2
