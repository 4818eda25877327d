# Slide-Swin-T + Mask R-CNN (FPN), COCO 3x with multi-scale training: the paper's setting (the
# paper's result figure exp_det.png: 46.8 box AP / 42.3 mask AP, 48M params, 268G FLOPs).
# Train: python tools/train.py configs/det/slide-swin_maskrcnn.py
# The base is mmdet's Swin-T 3x config (Swin's recipe: AdamW 1e-4, wd 0.05, 36 epochs, DETR-style
# multi-scale crop augmentation); only the backbone and its no-decay keys change.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py', '../_base_/models/slide.py']

pretrained = _base_.slide_swin.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.slide_swin,
        kernel_size=3,
        drop_path_rate=0.2),  # Swin-T Mask R-CNN value (mmdet base)
    neck=dict(in_channels=[96, 192, 384, 768]))

# as the official training code: no weight decay for names containing
# relative_position_bias_table (the slide 6-D and window 2-D tables share the name) and norms
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
