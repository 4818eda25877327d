# mmseg's Semantic FPN on ADE20K 512x512 crops with the recipe of the official BiFormer Semantic
# FPN configs (also used, as mmattn's choice, by the NAT and Dual-ViT FPN configs): PVT's recipe
# (the base) with lr 2e-4 (1e-4 x 2 for 8 GPUs); 80k iterations, linear warmup 1000 iters (ratio
# 0.1), cosine to min_lr_ratio 1e-8; batch 4/GPU x 8 GPUs = 32 (= the base's 4 per GPU). Each
# config adds its backbone and the neck's input widths.
_base_ = ['./semfpn_ade20k_40k.py']

optim_wrapper = dict(optimizer=dict(lr=0.0002))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', T_max=79000, eta_min_ratio=1e-8, begin=1000, end=80000,
         by_epoch=False)
]
train_cfg = dict(max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000))
# The official RepeatDataset x50 only served mmseg 0.x epoch counting; the iteration-based loop
# here samples endlessly anyway.
train_dataloader = dict(batch_size=4)
# Data from the base: RandomResize (2048, 512) ratio 0.5-2.0, RandomCrop 512, flip,
# PhotoMetricDistortion; test Resize (2048, 512) keep ratio, 'whole'.
