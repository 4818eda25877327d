# R-50 (V1c) UPerNet 160k ADE20K (mmseg's config) with Slide-Transformer's 3x3 slide attention as
# an mmcv plugin after conv2 of every bottleneck in stages 2-4 (residual, zero-initialised output:
# the ImageNet ResNet-50 V1c from mmseg's `pretrained` starts unchanged). mmattn's recipe: no
# paper reports this setting. After training, tools/reparameterize.py is not needed: call
# SlideAttention2d.reparameterize() to merge its two shift convolutions for deployment.
_base_ = ['mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        plugins=[
            dict(
                cfg=dict(type='SlideAttention2d', kernel_size=3),  # every released Slide model
                stages=(False, True, True, True),
                position='after_conv2')
        ]))
