# DiNAT-Tiny + RetinaNet (FPN), COCO 1x. NOT a paper setting (no RetinaNet in the DiNAT paper,
# specs/nat.md §4.1): nat_retinanet.py's recipe with the DiNAT-T backbone and the COCO dilation
# schedule of the paper's DiNAT detectors.
_base_ = ['./nat_retinanet.py']

# Official ImageNet-1k DiNAT-Tiny weights (dinat_tiny_in1k_224.pth, §3.4), read directly or
# converted once with python tools/convert_ckpt.py dinat dinat_tiny_in1k_224.pth OUT.pth
pretrained = 'checkpoints/dinat_tiny_in1k_224.pth'

model = dict(
    backbone=dict(
        type='DiNAT',
        arch='tiny',  # §1.8
        dilations='coco',  # §1.8: the DiNAT COCO schedule; small maps are padded (§2.6)
        drop_path_rate=0.2,  # mmattn choice: DiNAT-T's Mask R-CNN value (§4.1)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
