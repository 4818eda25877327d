# BiFormer-S + UPerNet, ADE20K 160k, 512x512 crops: the paper's setting (official
# semantic_segmentation configs of rayleizhu/BiFormer; paper 49.8 mIoU single scale).
# Train: python tools/train.py configs/seg/biformer_upernet.py   (8 GPUs x 2 images in the paper:
#   bash tools/dist_train.sh configs/seg/biformer_upernet.py 8; add --amp on GPU, see below)
_base_ = ['mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py', '../_base_/models/biformer.py']

pretrained = _base_.biformer.init_cfg.checkpoint

model = dict(
    pretrained=None,  # the base's ResNet 'open-mmlab://resnet50_v1c' would reach the backbone
    backbone=dict(
        _base_.biformer,
        n_win=8,  # official ADE20K configs: 8x8 regions
        drop_path_rate=0.3,  # official UPerNet configs: S 0.3, B 0.4
        norm_eval=False),  # official: backbone BN trains (SyncBN across GPUs, see sync_bn below)
    # official: UPerHead 512 channels, pool scales 1,2,3,6 (as the base)
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    # official: FCN auxiliary head on stage 3 (in_index 2), loss weight 0.4 (as the base)
    auxiliary_head=dict(in_channels=256, in_index=2, num_classes=150))

# the official backbone converts its BN to SyncBN; mmengine does that when distributed
# (ignored on a single process, where the heads' SyncBN are reverted to BN as well)
sync_bn = 'torch'

# Official UPerNet recipe (UniFormer/CSWin): AdamW lr 6e-5, betas (0.9, 0.999), wd 0.01, no decay
# on 'norm'. The paper trains with AMP (fp16, static loss scale 512); mmengine's AmpOptimWrapper
# is CUDA-only, so this config keeps OptimWrapper: pass --amp to tools/train.py on a GPU.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))

# official: linear warmup 1500 iters (start factor 1e-6), then poly (power 1.0, min lr 0) to 160k
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False)
]

# official: batch 2/GPU x 8 GPUs = 16 (the base is 4 x 4); 160k iterations, eval every 16k (base)
train_dataloader = dict(batch_size=2)
# Data from the base, equal to the official pipeline: RandomResize (2048, 512) ratio 0.5-2.0,
# RandomCrop 512 (cat_max_ratio 0.75), flip, PhotoMetricDistortion; test Resize (2048, 512) keep
# ratio, 'whole'. Those test sizes are not multiples of 32: auto_pad pads them inside.
