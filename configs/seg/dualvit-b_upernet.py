# Dual-ViT-B + UPerNet, ADE20K 160k, 512x512 crops: the official setting (semantic_segmentation
# configs of YehLi/ImageNetModel; official README: 51.7 mIoU single scale). Same recipe as
# dualvit_upernet.py (Dual-ViT-S) except the backbone and its drop path.
_base_ = ['./dualvit_upernet.py']

# Official Dual-ViT-B weights, read directly or converted once with
#   python tools/convert_ckpt.py dualvit dualvit_b.pth checkpoints/dualvit_b.pth
pretrained = 'checkpoints/dualvit_b.pth'

model = dict(
    backbone=dict(
        arch='base',  # dims 64-128-320-512, heads 2-4-10-16, depths 3-4-15-3
        drop_path_rate=0.3,  # official: B 0.3
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 320, 512]))  # Dual-ViT-B stage widths
