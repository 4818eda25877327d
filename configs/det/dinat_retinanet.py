# DiNAT-Tiny + RetinaNet (FPN), COCO 1x. NOT a paper setting (no RetinaNet in the DiNAT paper or
# repo): nat_retinanet.py's recipe with the DiNAT-T backbone and the COCO dilation schedule of
# the paper's DiNAT detectors.
_base_ = ['./nat_retinanet.py', '../_base_/models/dinat.py']

pretrained = _base_.dinat.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.dinat,
        dilations='coco',  # the DiNAT COCO schedule; levels smaller than 7*d are padded
        drop_path_rate=0.2))  # mmattn choice: DiNAT-T's official Mask R-CNN value
