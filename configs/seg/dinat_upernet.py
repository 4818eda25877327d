# DiNAT-Tiny + UPerNet, ADE20K 160k, 512x512 crops: the paper's setting (specs/nat.md §4.2;
# paper: 47.8 mIoU single scale / 48.8 multi-scale+flip, 58M params, 934G FLOPs).
# Same recipe as nat_upernet.py (NAT-Tiny); only the backbone class, its ImageNet weights and
# the ADE20K dilation schedule differ.
_base_ = ['./nat_upernet.py']

# Official ImageNet-1k DiNAT-Tiny weights (projects/dinat/checkpoints/imagenet1k/
# dinat_tiny_in1k_224.pth, §3.4), read directly or converted once with
#   python tools/convert_ckpt.py dinat dinat_tiny_in1k_224.pth checkpoints/dinat_tiny_in1k_224.pth
pretrained = 'checkpoints/dinat_tiny_in1k_224.pth'

model = dict(
    backbone=dict(
        type='DiNAT',
        arch='tiny',  # §1.8: same shapes as NAT-T (no layer scale)
        # §1.8 ADE20K 512 schedule: [1,16,1], [1,4,1,8], [1,2,1,3,1,4]x3, [1,2,1,2,1]; 512 crops
        # fit it exactly (level maps 128/64/32/16 >= 112/56/28/14, §2.6: no padding)
        dilations='ade20k',
        drop_path_rate=0.3,  # §4.2: UPerNet DiNAT-T 0.3
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
