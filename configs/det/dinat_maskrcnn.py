# DiNAT-Tiny + Mask R-CNN (FPN), COCO 3x with multi-scale training: the paper's setting (official
# DiNAT detection configs; paper: 48.6 box AP / 43.5 mask AP, 48M params, 258G FLOPs).
# Same recipe as nat_maskrcnn.py (NAT-Tiny); only the backbone class, its ImageNet weights and
# the COCO dilation schedule differ.
_base_ = ['./nat_maskrcnn.py', '../_base_/models/dinat.py']

pretrained = _base_.dinat.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.dinat,
        # official COCO schedule: [1,28,1], [1,7,1,14], [1,3,1,5,1,7]x3, [1,3,1,3,1]. Levels
        # smaller than 7*d (most COCO images at some level: a level-0 map needs an input of
        # >= ~784 px on both sides) are zero padded after the block's LayerNorm and cropped back,
        # as NATTEN 0.14 did when the paper's models were trained.
        dilations='coco',
        drop_path_rate=0.2))  # official Mask R-CNN DiNAT-T: 0.2
