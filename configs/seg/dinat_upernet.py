# DiNAT-Tiny + UPerNet, ADE20K 160k, 512x512 crops: the paper's setting (official DiNAT
# segmentation configs; paper: 47.8 mIoU single scale / 48.8 multi-scale+flip, 58M params,
# 934G FLOPs).
# Same recipe as nat_upernet.py (NAT-Tiny); only the backbone class, its ImageNet weights and
# the ADE20K dilation schedule differ.
_base_ = ['./nat_upernet.py', '../_base_/models/dinat.py']

pretrained = _base_.dinat.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.dinat,
        # official ADE20K 512 schedule: [1,16,1], [1,4,1,8], [1,2,1,3,1,4]x3, [1,2,1,2,1]; 512
        # crops fit it exactly (level maps 128/64/32/16 >= 7*d = 112/56/28/14: no padding)
        dilations='ade20k',
        drop_path_rate=0.3))  # official UPerNet DiNAT-T: 0.3
