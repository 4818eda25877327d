# NAT-Tiny + UPerNet, ADE20K 160k, 512x512 crops: the paper's setting (official segmentation
# configs of SHI-Labs/Neighborhood-Attention-Transformer; paper: 47.1 mIoU single scale / 48.4
# multi-scale+flip, 58M params, 934G FLOPs).
# Train: python tools/train.py configs/seg/nat_upernet.py   (8 GPUs x 2 images in the paper:
#   bash tools/dist_train.sh configs/seg/nat_upernet.py 8; add --amp on GPU, see below)
_base_ = ['mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py', '../_base_/models/nat.py']

pretrained = _base_.nat.init_cfg.checkpoint

model = dict(
    pretrained=None,  # the base's ResNet 'open-mmlab://resnet50_v1c' would reach the backbone
    backbone=dict(
        _base_.nat,
        drop_path_rate=0.3),  # official UPerNet NAT-T: 0.3
    # official: UPerHead 512 channels, pool scales 1,2,3,6, SyncBN, dropout 0.1 (as the base)
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    # official: FCN auxiliary head on level 2 (4E = 256 channels), 256 ch, loss weight 0.4
    auxiliary_head=dict(in_channels=256, in_index=2, num_classes=150))

# official: AdamW lr 6e-5, betas (0.9, 0.999), wd 0.01, no decay for 'rpb' and 'norm' parameters.
# The paper trains with fp16 (Fp16OptimizerHook); mmengine's AmpOptimWrapper is CUDA-only, so
# this config keeps OptimWrapper: pass --amp to tools/train.py on a GPU.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'rpb': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.)
    }))

# official: linear warmup 1500 iters (start factor 1e-6), then poly (power 1.0, min lr 0) to 160k
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False)
]

# official: batch 2/GPU x 8 GPUs = 16 (the base is 4 x 4); 160k iterations, eval every 16k (base)
train_dataloader = dict(batch_size=2)
# Data from the base, equal to the official pipeline: RandomResize (2048, 512) ratio 0.5-2.0,
# RandomCrop 512 (cat_max_ratio 0.75), flip, PhotoMetricDistortion; test Resize (2048, 512) keep
# ratio, 'whole'.
