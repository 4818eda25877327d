# Slide-Swin-T + Mask R-CNN (FPN), COCO 3x with multi-scale training: the paper's setting
# (specs/slide.md §4.3: paper 46.8 box AP / 42.3 mask AP, 48M params, 268G FLOPs).
# Train: python tools/train.py configs/det/slide-swin_maskrcnn.py
# The base is mmdet's Swin-T 3x config (Swin's recipe: AdamW 1e-4, wd 0.05, 36 epochs, DETR-style
# multi-scale crop augmentation); only the backbone and its no-decay keys change.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

# No official checkpoints exist (§0). An ImageNet model trained with the released code: convert it
# once with python tools/convert_ckpt.py slide_swin ckpt_epoch_299.pth \
#   checkpoints/slide_swin_tiny.pth --trusted   (the file pickles a yacs config, §6.16)
# Its global-mode stage-3/4 tables are resized to window 7 when loading (§2.4, not exact).
pretrained = 'checkpoints/slide_swin_tiny.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='SlideSwin',
        arch='tiny',  # §2.5: C=96, depths 2-2-6-2, heads 3-6-12-24
        attn_mode='window',  # §2.4: the paper's Swin window 7 with shifts in stages 3-4
        window_size=7,
        kernel_size=3,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,  # Swin-T Mask R-CNN value (mmdet base)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

# §6.13: no weight decay for the bias tables (slide 6-D and window 2-D share the name) and norms
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
