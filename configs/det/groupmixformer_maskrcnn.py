# GroupMixFormer-S + Mask R-CNN (FPN), COCO 1x with multi-scale training. mmattn's settings, NOT
# the authors': the official repository released classification only (detection/detection.md
# says "WIP"), so there is no official config and no published number (specs/groupmixformer.md
# §4.1, §4.3). This is the recipe of the direct ancestor CoaT (spec §4.5): AdamW 1e-4, wd 0.05,
# 12 epochs with steps at 8 and 11, DETR-style multi-scale training.
# Train: python tools/train.py configs/det/groupmixformer_maskrcnn.py
#   (bash tools/dist_train.sh configs/det/groupmixformer_maskrcnn.py 8; add --amp on GPU)
# The base is mmdet's Swin-T ms-crop config: it carries the DETR-style multi-scale pipeline.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

# Official ImageNet-1k GroupMixFormer-S weights (a {'model': ...} file, spec §3.1): init_cfg reads
# it directly (norm4/head dropped, names checked strictly), or convert it once with
#   python tools/convert_ckpt.py groupmixformer SRC.pth checkpoints/groupmixformer_small.pth
# It is read only when training starts (init_weights), so the config builds without it.
pretrained = 'checkpoints/groupmixformer_small.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='GroupMixFormer',
        arch='small',  # §1.6: dims 80-160-320-320, depths 2-4-12-4 (the repo's default yaml)
        out_indices=(0, 1, 2, 3),  # §4.5: the four maps of return_interm_layers, no output norms
        drop_path_rate=0.2,  # mmattn choice: no official value (§4.5 suggests 0.1-0.3)
        norm_cfg=dict(type='BN'),  # §1.2: SyncBN officially; sync_bn below converts it
        norm_eval=False,  # mmattn choice: aggregator BN statistics adapt to COCO (§4.5)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[80, 160, 320, 320]))  # §4.5: FPN in_channels = embedding_dims of S

# §1.2: the official model uses SyncBN everywhere; mmengine converts every BN when distributed
sync_bn = 'torch'

# §4.5 (CoaT Mask R-CNN recipe): AdamW lr 1e-4, betas (0.9, 0.999), wd 0.05; no decay on norms
# and biases as in the official ImageNet recipe (§4.4). CoaT trains with fp16; mmengine's
# AmpOptimWrapper is CUDA-only, so pass --amp to tools/train.py on a GPU.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(_delete_=True, norm_decay_mult=0., bias_decay_mult=0.))

# §4.5 (CoaT): 12 epochs, x0.1 at epochs 8 and 11; linear warmup 500 iters (mmdet 1x default)
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1)
]
# Data from the base, equal to §4.5 (CoaT): flip 0.5 + RandomChoice of (short side 480..800 step
# 32, long <= 1333) or (400/500/600 -> absolute-range crop 384..600 -> 480..800); test Resize
# (1333, 800) keep ratio; pad_size_divisor 32; 2 images/GPU x 8 GPUs = 16.
