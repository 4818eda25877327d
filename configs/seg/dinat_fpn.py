# DiNAT-Tiny + Semantic FPN, ADE20K 80k, 512x512 crops. NOT a paper setting (the DiNAT paper
# reports ADE20K with UPerNet only): nat_fpn.py's recipe with the DiNAT-T backbone and the
# ADE20K dilation schedule of the paper's DiNAT UPerNet.
_base_ = ['./nat_fpn.py', '../_base_/models/dinat.py']

pretrained = _base_.dinat.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.dinat,
        dilations='ade20k',  # the DiNAT ADE20K 512 schedule (512 crops: no padding)
        drop_path_rate=0.2))  # mmattn choice: DiNAT-T's ImageNet value
