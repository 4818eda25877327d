# BiFormer-B + UPerNet, ADE20K 160k: the paper's setting (specs/biformer.md §4.2).
# Same recipe as biformer_upernet.py (BiFormer-S) except the backbone width and drop path.
_base_ = ['./biformer_upernet.py']

# Make it with: python tools/convert_ckpt.py biformer biformer_base_best.pth
#   checkpoints/biformer_base_converted.pth  (read only when training starts)
pretrained = 'checkpoints/biformer_base_converted.pth'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,  # §4.2 UPerNet: B 0.4
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),  # BiFormer-B stage widths
    auxiliary_head=dict(in_channels=384))  # §4.2: stage-3 width of B
