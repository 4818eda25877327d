# Dual-ViT-S + Mask R-CNN (FPN), COCO 1x: the official setting (specs/dualvit.md §4.2;
# official README: 46.5 box AP / 42.2 mask AP).
# Train: python tools/train.py configs/det/dualvit_maskrcnn.py   (8 GPUs x 2 images officially:
#   bash tools/dist_train.sh configs/det/dualvit_maskrcnn.py 8; add --amp on GPU, see below)
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

# Official ImageNet-1k Dual-ViT-S weights (object_detection/Pretrained/dualvit_s.pth of
# YehLi/ImageNetModel, Baidu only, code 'nets'): a flat classification state dict, read directly
# by init_cfg (22 classification-only tensors dropped, names checked strictly), or converted once
# with python tools/convert_ckpt.py dualvit dualvit_s.pth checkpoints/dualvit_s.pth
# It is read only when training starts (init_weights), so the config builds without it.
pretrained = 'checkpoints/dualvit_s.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DualViT',
        arch='small',  # §1.2: dims 64-128-320-448, heads 2-4-10-14, depths 3-4-6-3
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.15,  # §4.2: hard-coded 0.15 in every official detection config
        stem_norm_cfg=dict(type='BN', requires_grad=False),  # §2.5: stem BN affine frozen
        norm_eval=False,  # §2.5: ... but its running statistics still update
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 448]))  # Dual-ViT-S stage widths, all 4 levels

# §4.2: find_unused_parameters=True in the official configs
find_unused_parameters = True

# §4.2: AdamW lr 2e-4, wd 1e-4, no paramwise rules. Officially fp16 (loss scale 512);
# mmengine's AmpOptimWrapper is CUDA-only, so this config keeps OptimWrapper: pass --amp to
# tools/train.py on a GPU.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0002, weight_decay=0.0001))

# Schedule from the base, equal to §4.2: 12 epochs, linear warmup 500 iters (ratio 0.001), x0.1
# at epochs 8 and 11; batch 2/GPU x 8 GPUs = 16 (auto_scale_lr base 16).
# Data from the base, equal to §4.2: Resize (1333, 800) keep ratio, flip 0.5.
