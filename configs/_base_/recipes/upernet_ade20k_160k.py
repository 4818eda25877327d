# mmseg's UPerNet on ADE20K 512x512 crops with the recipe the BiFormer, NAT/DiNAT and Dual-ViT
# official UPerNet configs share with Swin's (used by GroupMixFormer, which has none): AdamW lr
# 6e-5, betas (0.9, 0.999), wd 0.01; linear warmup 1500 iters (start factor 1e-6), then poly
# (power 1.0, min lr 0) to 160k; batch 2/GPU x 8 GPUs = 16 (the base is 4 x 4). UPerHead 512
# channels, pool scales 1,2,3,6, dropout 0.1 and the FCN auxiliary head (loss weight 0.4) are the
# base's. The official runs use fp16; mmengine's AmpOptimWrapper is CUDA-only, so this keeps
# OptimWrapper: pass --amp to tools/train.py on a GPU. Each config adds its backbone, the head
# input widths and its no-decay rules.
_base_ = ['mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py']

model = dict(
    pretrained=None,  # the base's ResNet 'open-mmlab://resnet50_v1c' would reach the backbone
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False)
]

# 160k iterations and eval every 16k from the base
train_dataloader = dict(batch_size=2)
# Data from the base, equal to the official pipelines: RandomResize (2048, 512) ratio 0.5-2.0,
# RandomCrop 512 (cat_max_ratio 0.75), flip, PhotoMetricDistortion; test Resize (2048, 512) keep
# ratio, 'whole'.
