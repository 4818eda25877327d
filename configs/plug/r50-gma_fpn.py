# R-50 (V1c) Semantic FPN 160k ADE20K (mmseg's config) with GroupMixFormer's group-mix attention
# as an mmcv plugin after conv2 of every bottleneck in stages 2-4 (residual, zero-initialised
# output: the ImageNet ResNet-50 V1c from mmseg's `pretrained` starts unchanged). The op needs a
# multiple of 10 channels: the blocks attend in 130/260/520 channels inside 128/256/512-channel
# stages. mmattn's recipe: no paper reports this setting.
_base_ = ['mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        plugins=[
            dict(
                cfg=dict(type='GroupMixAttention2d'),  # 8 heads, fixed by the op
                stages=(False, True, True, True),
                position='after_conv2')
        ]))
