# Dual-ViT-S backbone of the official dense-prediction models (object_detection and
# semantic_segmentation folders of YehLi/ImageNetModel, Dual-ViT), shared by
# configs/det/dualvit_*.py and configs/seg/dualvit_*.py. Each of those sets what differs per task:
# the stem norm (frozen BN affine in mmdet, trained SyncBN in mmseg) and the ADE20K test tiling.
# The -b configs swap in Dual-ViT-B.
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

dualvit = dict(
    _delete_=True,  # replaces the base config's ResNet backbone whole
    type='DualViT',
    arch='small',  # dims 64-128-320-448, heads 2-4-10-14, depths 3-4-6-3
    out_indices=(0, 1, 2, 3),
    # official S value in every task (the detection backbone hard-codes 0.15 for S and B alike)
    drop_path_rate=0.15,
    norm_eval=False,  # the official backbone has no norm_eval: stem BN statistics always update
    # Official ImageNet-1k Dual-ViT-S weights (object_detection/Pretrained/dualvit_s.pth of
    # YehLi/ImageNetModel, Baidu only, code 'nets'): a flat classification state dict, read
    # directly by init_cfg (22 classification-only tensors dropped, names checked strictly), or
    # converted once with
    #   python tools/convert_ckpt.py dualvit dualvit_s.pth checkpoints/dualvit_s.pth
    # It is read only when training starts (init_weights), so the configs build without it. Each
    # config copies the path into its top-level `pretrained`.
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/dualvit_s.pth'))
