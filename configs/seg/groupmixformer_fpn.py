# GroupMixFormer-S + Semantic FPN, ADE20K 40k, 512x512 crops. mmattn's settings, NOT the authors':
# the official repository released classification only (segmentation/segmentation.md says "wip";
# issue #1 asking for the head is unanswered), so there is no official config or number. This is
# the standard PVT Semantic FPN protocol.
# Train: python tools/train.py configs/seg/groupmixformer_fpn.py
#   (bash tools/dist_train.sh configs/seg/groupmixformer_fpn.py 8; add --amp on GPU)
_base_ = [
    'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', '../_base_/models/groupmixformer.py'
]

pretrained = _base_.groupmixformer.init_cfg.checkpoint

model = dict(
    pretrained=None,  # the base's ResNet 'open-mmlab://resnet50_v1c' would reach the backbone
    backbone=dict(
        _base_.groupmixformer,
        drop_path_rate=0.1),  # mmattn choice: no official value; short 40k schedule
    # stock Semantic FPN: FPN(stages 0..3 -> 256, 4 outputs) + FPNHead(128 channels)
    neck=dict(in_channels=[80, 160, 320, 320]),  # FPN in_channels = embedding_dims of S
    decode_head=dict(num_classes=150))

# PVT Semantic FPN protocol: AdamW lr 1e-4, wd 1e-4. fp16 only via --amp on a GPU.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))

# PVT protocol: 40k iterations, poly schedule power 0.9
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=40000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=4000))
# PVT protocol: batch 2/GPU x 8 GPUs = 16 (the base is 4 x 4)
train_dataloader = dict(batch_size=2)
# Data from the base: RandomResize (2048, 512) ratio 0.5-2.0, RandomCrop 512, flip,
# PhotoMetricDistortion; test Resize (2048, 512) keep ratio, 'whole'.
