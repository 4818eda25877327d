# Dual-ViT-S + UPerNet, ADE20K 160k, 512x512 crops: the official setting (semantic_segmentation
# configs of YehLi/ImageNetModel; official README: 49.2 mIoU single scale).
# Train: python tools/train.py configs/seg/dualvit_upernet.py   (8 GPUs x 2 images officially:
#   bash tools/dist_train.sh configs/seg/dualvit_upernet.py 8; add --amp on GPU, see below)
# One official evaluation detail is NOT reproduced (docs/dualvit.md): the official CResize rounds
# the test size to a multiple of 16; this config tests at the base's Resize (2048, 512) keep ratio.
_base_ = ['mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py', '../_base_/models/dualvit.py']

pretrained = _base_.dualvit.init_cfg.checkpoint

model = dict(
    pretrained=None,  # the base's ResNet 'open-mmlab://resnet50_v1c' would reach the backbone
    backbone=dict(
        _base_.dualvit,
        # official mmseg stem: SyncBN, trained (BN here; sync_bn below converts it)
        stem_norm_cfg=dict(type='BN', requires_grad=True),
        # official: in eval mode, images with a side over 768 run again on 768x768 tiles whose
        # feature maps are pasted into the whole-image ones
        test_tile_size=768),
    # official: UPerHead 512 channels, pool scales 1/2/3/6, SyncBN, dropout 0.1 (as the base)
    decode_head=dict(in_channels=[64, 128, 320, 448], num_classes=150),
    # official: FCN auxiliary head on stage 3 (320 channels), 256 channels, loss weight 0.4 (base)
    auxiliary_head=dict(in_channels=320, in_index=2, num_classes=150))

# the official stem uses SyncBN; mmengine converts BN to SyncBN when distributed
sync_bn = 'torch'

# official: AdamW lr 6e-5, betas (0.9, 0.999), wd 0.01, no decay for 'norm' parameters. Officially
# fp16 (loss scale 512); mmengine's AmpOptimWrapper is CUDA-only, so this config keeps
# OptimWrapper: pass --amp to tools/train.py on a GPU.
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

# official: batch 2/GPU x 8 GPUs = 16 (the base is 4 x 4); 160k iterations
train_dataloader = dict(batch_size=2)
# Data from the base, equal to the official training pipeline: RandomResize (2048, 512) ratio
# 0.5-2.0, RandomCrop 512 (cat_max_ratio 0.75), flip, PhotoMetricDistortion.
