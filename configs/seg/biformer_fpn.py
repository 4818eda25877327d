# BiFormer-S + Semantic FPN, ADE20K 80k, 512x512 crops: the paper's setting (official
# semantic_segmentation configs of rayleizhu/BiFormer; paper 48.9 mIoU single scale).
# Train: python tools/train.py configs/seg/biformer_fpn.py   (8 GPUs x 4 images in the paper:
#   bash tools/dist_train.sh configs/seg/biformer_fpn.py 8; add --amp on GPU, see below)
_base_ = ['mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', '../_base_/models/biformer.py']

pretrained = _base_.biformer.init_cfg.checkpoint

model = dict(
    pretrained=None,  # the base's ResNet 'open-mmlab://resnet50_v1c' would reach the backbone
    backbone=dict(
        _base_.biformer,
        n_win=8,  # official ADE20K configs: 8x8 regions
        drop_path_rate=0.15,  # official Semantic FPN configs: S 0.15, B 0.3
        norm_eval=False),  # official: backbone BN trains (SyncBN across GPUs, see sync_bn below)
    # official: FPN(C0..C3 -> 256, 4 outputs) + FPNHead(128 channels, dropout 0.1) as in the base
    neck=dict(in_channels=[64, 128, 256, 512]),
    decode_head=dict(num_classes=150))

# the official backbone converts its BN to SyncBN; mmengine does that when distributed
sync_bn = 'torch'

# official: AdamW lr 2e-4 (1e-4 x 2 for 8 GPUs), wd 1e-4, no paramwise rules.
# The paper trains with AMP (fp16, static loss scale 512); mmengine's AmpOptimWrapper is
# CUDA-only, so this config keeps OptimWrapper: pass --amp to tools/train.py on a GPU.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001))

# official: 80k iterations; linear warmup 1000 iters (ratio 0.1), cosine to min_lr_ratio 1e-8
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', T_max=79000, eta_min_ratio=1e-8, begin=1000, end=80000,
         by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)  # official: 80k
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=8000))
# official: batch 4/GPU x 8 GPUs = 32 (= the base's 4 per GPU). The official RepeatDataset x50
# only served mmseg 0.x epoch counting; the iteration-based loop here samples endlessly anyway.
train_dataloader = dict(batch_size=4)
# Test: the paper resizes the short side to 512 *and to a multiple of 32* (its AlignResize, not
# in mmseg 1.x); the base's Resize (2048, 512) keep ratio is used instead, and auto_pad handles
# sizes that are not multiples of 32 (may differ slightly from the paper's numbers).
