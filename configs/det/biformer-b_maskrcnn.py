# BiFormer-B + Mask R-CNN (FPN), COCO 1x: the paper's setting (paper 48.6 box AP / 43.7 mask AP).
# Same recipe as biformer_maskrcnn.py (BiFormer-S) except the backbone width and drop path.
_base_ = ['./biformer_maskrcnn.py']

# Make it with: python tools/convert_ckpt.py biformer biformer_base_best.pth
#   checkpoints/biformer_base_converted.pth  (read only when training starts)
pretrained = 'checkpoints/biformer_base_converted.pth'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,  # official COCO configs: B 0.3
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))  # BiFormer-B stage widths
