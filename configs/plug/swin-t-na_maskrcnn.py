# Swin-T Mask R-CNN 1x (mmdet's config) whose shifted-window attention in stages 3-4 is replaced
# by NAT's 7x7 neighborhood attention (mmattn.AttentionSwap). Everything else loads from the stock
# Swin-T ImageNet checkpoint; the log lists what was loaded, what is new (the swapped attention,
# zero-initialised output) and which checkpoint tensors were not used (the replaced attention).
# mmattn's recipe: no paper reports this setting.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

pretrained = 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='AttentionSwap',
        backbone=dict(
            type='mmdet.SwinTransformer',
            embed_dims=96,
            depths=[2, 2, 6, 2],
            num_heads=[3, 6, 12, 24],
            window_size=7,
            mlp_ratio=4,
            qkv_bias=True,
            drop_path_rate=0.2,
            patch_norm=True,
            out_indices=(0, 1, 2, 3),
            convert_weights=True,  # the official Swin release: mmdet renames its keys
            init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
        stages=(2, 3),
        attn=dict(type='NeighborhoodAttention2d', kernel_size=7)))  # heads: Swin's 12 / 24
