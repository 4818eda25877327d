# SegFormer MiT-B0 160k ADE20K (mmseg's config) whose efficient self-attention in stages 3-4 is
# replaced by BiFormer's bi-level routing attention (mmattn.AttentionSwap). Everything else loads
# from the stock MiT-B0 checkpoint (key accounting in the log). mmattn's recipe: no paper
# reports this setting.
_base_ = ['mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

checkpoint = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/segformer/mit_b0_20220624-7e0fe6dd.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='AttentionSwap',
        backbone=dict(
            type='mmseg.MixVisionTransformer',
            in_channels=3,
            embed_dims=32,
            num_stages=4,
            num_layers=[2, 2, 2, 2],
            num_heads=[1, 2, 5, 8],
            patch_sizes=[7, 3, 3, 3],
            sr_ratios=[8, 4, 2, 1],
            out_indices=(0, 1, 2, 3),
            mlp_ratio=4,
            qkv_bias=True,
            drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=0.1,
            init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
        stages=(2, 3),
        # 512x512 crops: stage 3 is 32x32, stage 4 16x16; 8x8 regions of 4x4 / 2x2 pixels
        attn=dict(type='BiLevelRoutingAttention2d', n_win=8, topk=4)))
