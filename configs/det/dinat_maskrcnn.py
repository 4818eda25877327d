# DiNAT-Tiny + Mask R-CNN (FPN), COCO 3x with multi-scale training: the paper's setting
# (specs/nat.md §4.1; paper: 48.6 box AP / 43.5 mask AP, 48M params, 258G FLOPs).
# Same recipe as nat_maskrcnn.py (NAT-Tiny); only the backbone class, its ImageNet weights and
# the COCO dilation schedule differ.
_base_ = ['./nat_maskrcnn.py']

# Official ImageNet-1k DiNAT-Tiny weights (projects/dinat/checkpoints/imagenet1k/
# dinat_tiny_in1k_224.pth, §3.4), read directly or converted once with
#   python tools/convert_ckpt.py dinat dinat_tiny_in1k_224.pth checkpoints/dinat_tiny_in1k_224.pth
pretrained = 'checkpoints/dinat_tiny_in1k_224.pth'

model = dict(
    backbone=dict(
        type='DiNAT',
        arch='tiny',  # §1.8: same shapes as NAT-T (no layer scale)
        # §1.8 COCO schedule: [1,28,1], [1,7,1,14], [1,3,1,5,1,7]x3, [1,3,1,3,1]. Levels smaller
        # than 7*d (most COCO images at some level, §2.6) are zero padded after the block's
        # LayerNorm and cropped back, as NATTEN 0.14 did when the paper's models were trained.
        dilations='coco',
        drop_path_rate=0.2,  # §4.1: Mask R-CNN DiNAT-T 0.2
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
