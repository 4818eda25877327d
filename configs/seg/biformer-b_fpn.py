# BiFormer-B + Semantic FPN, ADE20K 80k: the paper's setting (paper 49.9 mIoU).
# Same recipe as biformer_fpn.py (BiFormer-S) except the backbone width and drop path.
_base_ = ['./biformer_fpn.py']

# Make it with: python tools/convert_ckpt.py biformer biformer_base_best.pth
#   checkpoints/biformer_base_converted.pth  (read only when training starts)
pretrained = 'checkpoints/biformer_base_converted.pth'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,  # official Semantic FPN configs: B 0.3
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))  # BiFormer-B stage widths
