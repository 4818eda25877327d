# GroupMixFormer-S + RetinaNet (FPN), COCO 1x. mmattn's settings, NOT the authors': the official
# repository released classification only (detection/detection.md says "WIP"), so there is no
# official config and no published number to compare with (specs/groupmixformer.md §4.1, §4.3).
# This is the standard PVT RetinaNet 1x protocol named in spec §4.5.
# Train: python tools/train.py configs/det/groupmixformer_retinanet.py
#   (bash tools/dist_train.sh configs/det/groupmixformer_retinanet.py 8; add --amp on GPU)
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']
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
    neck=dict(
        in_channels=[80, 160, 320, 320],  # §4.5: FPN in_channels = embedding_dims of S
        start_level=1,  # stock RetinaNet: P3-P7 from stages 1-3
        add_extra_convs='on_input'))  # stock RetinaNet

# §1.2: the official model uses SyncBN everywhere; mmengine converts every BN when distributed
sync_bn = 'torch'

# §4.5 (PVT RetinaNet 1x protocol): AdamW lr 1e-4, wd 1e-4. fp16 only via --amp on a GPU.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))

# Schedule and data from the base, equal to the §4.5 protocol: 12 epochs, warmup 500 iters,
# x0.1 at epochs 8 and 11; Resize (1333, 800) keep ratio, flip 0.5; pad_size_divisor 32 (§4.5,
# the backbone pads inside as well); 2 images/GPU x 8 GPUs = 16.
