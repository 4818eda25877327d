# GroupMixFormer-S + RetinaNet (FPN), COCO 1x. mmattn's settings, NOT the authors': the official
# repository released classification only (detection/detection.md says "WIP"), so there is no
# official config and no published number to compare with. This is the standard PVT RetinaNet
# 1x protocol.
# Train: python tools/train.py configs/det/groupmixformer_retinanet.py
#   (bash tools/dist_train.sh configs/det/groupmixformer_retinanet.py 8; add --amp on GPU)
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../_base_/models/groupmixformer.py'
]

pretrained = _base_.groupmixformer.init_cfg.checkpoint

model = dict(
    backbone=dict(_base_.groupmixformer),
    neck=dict(
        in_channels=[80, 160, 320, 320],  # FPN in_channels = embedding_dims of S
        start_level=1,  # stock RetinaNet: P3-P7 from stages 1-3
        add_extra_convs='on_input'))  # stock RetinaNet

# PVT RetinaNet 1x protocol: AdamW lr 1e-4, wd 1e-4. fp16 only via --amp on a GPU.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))

# Schedule and data from the base, equal to the PVT protocol: 12 epochs, warmup 500 iters, x0.1
# at epochs 8 and 11; Resize (1333, 800) keep ratio, flip 0.5; pad_size_divisor 32 (the official
# model needs sides divisible by 32; the backbone pads inside as well); 2 images/GPU x 8 GPUs = 16.
