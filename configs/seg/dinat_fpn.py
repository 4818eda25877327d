# DiNAT-Tiny + Semantic FPN, ADE20K 80k, 512x512 crops. NOT a paper setting (the DiNAT paper
# reports ADE20K with UPerNet only, specs/nat.md §4.2): nat_fpn.py's recipe with the DiNAT-T
# backbone and the ADE20K dilation schedule of the paper's DiNAT UPerNet.
_base_ = ['./nat_fpn.py']

# Official ImageNet-1k DiNAT-Tiny weights (dinat_tiny_in1k_224.pth, §3.4), read directly or
# converted once with python tools/convert_ckpt.py dinat dinat_tiny_in1k_224.pth OUT.pth
pretrained = 'checkpoints/dinat_tiny_in1k_224.pth'

model = dict(
    backbone=dict(
        type='DiNAT',
        arch='tiny',  # §1.8
        dilations='ade20k',  # §1.8: the DiNAT ADE20K 512 schedule (512 crops: no padding)
        drop_path_rate=0.2,  # mmattn choice: DiNAT-T's ImageNet value (§1.8)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
