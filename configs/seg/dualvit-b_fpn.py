# Dual-ViT-B + Semantic FPN, ADE20K 80k. NOT an official setting (no Semantic FPN in the
# Dual-ViT repo): dualvit_fpn.py's mmattn recipe with Dual-ViT-B.
_base_ = ['./dualvit_fpn.py']

# Official Dual-ViT-B weights, read directly or converted once with
#   python tools/convert_ckpt.py dualvit dualvit_b.pth checkpoints/dualvit_b.pth
pretrained = 'checkpoints/dualvit_b.pth'

model = dict(
    backbone=dict(
        arch='base',  # dims 64-128-320-512, heads 2-4-10-16, depths 3-4-15-3
        drop_path_rate=0.3,  # mmattn choice: the official UPerNet B value
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))  # Dual-ViT-B stage widths
