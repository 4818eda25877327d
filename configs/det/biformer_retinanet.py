# BiFormer-S + RetinaNet (FPN), COCO 1x: the paper's setting (specs/biformer.md §4.1).
# Train: python tools/train.py configs/det/biformer_retinanet.py   (8 GPUs x 2 images in the paper:
#   bash tools/dist_train.sh configs/det/biformer_retinanet.py 8; add --amp on GPU, see below)
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

# ImageNet-1k BiFormer-S weights in mmattn's names. Make the file once from the official release
# (biformer_small_best.pth of rayleizhu/BiFormer) with
#   python tools/convert_ckpt.py biformer biformer_small_best.pth \
#       checkpoints/biformer_small_converted.pth
# It is read only when training starts (init_weights), so the config builds without it.
pretrained = 'checkpoints/biformer_small_converted.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='BiFormer',
        arch='small',
        n_win=16,  # §1.7/§4.1: 16x16 regions for COCO
        topks=(1, 4, 16, -2),  # §1.4: official per-stage top-k, stage 4 global attention
        auto_pad=True,  # §1.7: pad to a multiple of n_win for any image size
        out_indices=(0, 1, 2, 3),  # §1.7: all four stages returned; FPN skips stage 1
        drop_path_rate=0.2,  # §4.1: S 0.2
        norm_eval=True,  # §4.1: stem/downsample BN in eval mode during training
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        in_channels=[64, 128, 256, 512],  # BiFormer-S stage widths
        start_level=1,  # §4.1: P3-P7 from stages 2-4 (as the stock RetinaNet)
        add_extra_convs='on_input'))  # §4.1

# §4.1: stage 1 output and its norm0 feed nothing (start_level=1) -> DDP needs this
find_unused_parameters = True

# §4.1 (WaveViT recipe): AdamW lr 1e-4, wd 1e-4, default betas, no paramwise rules.
# The paper trains with AMP (fp16, static loss scale 512); mmengine's AmpOptimWrapper is
# CUDA-only, so this config keeps OptimWrapper: pass --amp to tools/train.py on a GPU.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))

# Schedule from the base, unchanged and equal to §4.1: 12 epochs, linear warmup 500 iters
# (start factor 0.001), step x0.1 at epochs 8 and 11; batch 2/GPU x 8 GPUs = 16 images
# (auto_scale_lr.base_batch_size=16: use --auto-scale-lr with another total batch).
# Data from the base, equal to §4.1: Resize (1333, 800) keep ratio, flip 0.5, pad to 32.
