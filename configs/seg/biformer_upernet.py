# BiFormer-S + UPerNet, ADE20K 160k, 512x512 crops: the paper's setting (specs/biformer.md §4.2).
# Train: python tools/train.py configs/seg/biformer_upernet.py   (8 GPUs x 2 images in the paper:
#   bash tools/dist_train.sh configs/seg/biformer_upernet.py 8; add --amp on GPU, see below)
_base_ = ['mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

# ImageNet-1k BiFormer-S weights in mmattn's names. Make the file once from the official release
# (biformer_small_best.pth of rayleizhu/BiFormer) with
#   python tools/convert_ckpt.py biformer biformer_small_best.pth \
#       checkpoints/biformer_small_converted.pth
# It is read only when training starts (init_weights), so the config builds without it.
pretrained = 'checkpoints/biformer_small_converted.pth'

model = dict(
    pretrained=None,  # the base's ResNet 'open-mmlab://resnet50_v1c' would reach the backbone
    backbone=dict(
        _delete_=True,
        type='BiFormer',
        arch='small',
        n_win=8,  # §1.7/§4.2: 8x8 regions for ADE20K
        topks=(1, 4, 16, -2),  # §1.4: official per-stage top-k, stage 4 global attention
        auto_pad=True,  # §4.2: test images (2048, 512) keep-ratio are not multiples of 32
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,  # §4.2 UPerNet: S 0.3
        norm_eval=False,  # §4.2: backbone BN trains (SyncBN across GPUs, see sync_bn below)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),  # §4.2: UPerHead 512 ch
    auxiliary_head=dict(in_channels=256, in_index=2, num_classes=150))  # §4.2: FCN aux on stage 3

# §4.2: the official backbone converts its BN to SyncBN; mmengine does that when distributed
# (ignored on a single process, where the heads' SyncBN are reverted to BN as well)
sync_bn = 'torch'

# §4.2 (UniFormer/CSWin recipe): AdamW lr 6e-5, betas (0.9, 0.999), wd 0.01, no decay on 'norm'.
# The paper trains with AMP (fp16, static loss scale 512); mmengine's AmpOptimWrapper is
# CUDA-only, so this config keeps OptimWrapper: pass --amp to tools/train.py on a GPU.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))

# §4.2: linear warmup 1500 iters (start factor 1e-6), then poly (power 1.0, min lr 0) to 160k
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False)
]

# §4.2: batch 2/GPU x 8 GPUs = 16 (the base is 4 x 4); 160k iterations, eval every 16k (base)
train_dataloader = dict(batch_size=2)
# Data from the base, equal to §4.2: RandomResize (2048, 512) ratio 0.5-2.0, RandomCrop 512
# (cat_max_ratio 0.75), flip, PhotoMetricDistortion; test Resize (2048, 512) keep ratio, 'whole'.
