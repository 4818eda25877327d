# Dual-ViT-B + Mask R-CNN (FPN), COCO 1x: the official setting (object_detection configs of
# YehLi/ImageNetModel; official README: 48.4 box AP / 43.4 mask AP).
# Same recipe as dualvit_maskrcnn.py (Dual-ViT-S) except the backbone.
_base_ = ['./dualvit_maskrcnn.py']

# Official Dual-ViT-B weights (object_detection/Pretrained/dualvit_b.pth, Baidu only), read
# directly or converted once with python tools/convert_ckpt.py dualvit dualvit_b.pth OUT.pth
pretrained = 'checkpoints/dualvit_b.pth'

model = dict(
    backbone=dict(
        arch='base',  # dims 64-128-320-512, heads 2-4-10-16, depths 3-4-15-3
        drop_path_rate=0.15,  # the official dualvit_b detection subclass hard-codes 0.15
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))  # Dual-ViT-B stage widths
