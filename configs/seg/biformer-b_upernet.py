# BiFormer-B + UPerNet, ADE20K 160k: the paper's setting (paper 51.0 mIoU).
# Same recipe as biformer_upernet.py (BiFormer-S) except the backbone width and drop path.
_base_ = ['./biformer_upernet.py']

# Make it with: python tools/convert_ckpt.py biformer biformer_base_best.pth
#   checkpoints/biformer_base_converted.pth  (read only when training starts)
pretrained = 'checkpoints/biformer_base_converted.pth'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,  # official UPerNet configs: B 0.4
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),  # BiFormer-B stage widths
    auxiliary_head=dict(in_channels=384))  # auxiliary head on stage 3: its width in B
