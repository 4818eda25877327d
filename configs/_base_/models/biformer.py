# BiFormer-S backbone of the official dense-prediction models (BiFormer_mm in the object_detection
# and semantic_segmentation folders of rayleizhu/BiFormer), shared by configs/det/biformer_*.py
# and configs/seg/biformer_*.py. Each of those sets what differs per task: n_win (16 for COCO,
# 8 for ADE20K), drop_path_rate and norm_eval. The -b configs swap in BiFormer-B.
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

# ImageNet-1k BiFormer-S weights in mmattn's names. Make the file once from the official release
# (biformer_small_best.pth of rayleizhu/BiFormer) with
#   python tools/convert_ckpt.py biformer biformer_small_best.pth \
#       checkpoints/biformer_small_converted.pth
# It is read only when training starts (init_weights), so the configs build without it.
# (Each config copies the path into its top-level `pretrained`: a second base may not define a
# key that the mmdet/mmseg base defines too, and some of those, e.g. Swin's, define `pretrained`.)
biformer = dict(
    _delete_=True,  # replaces the base config's ResNet backbone whole
    type='BiFormer',
    arch='small',
    # the released models' per-stage top-k: routing attention in stages 1-3; -2 makes stage 4
    # plain global attention with LePE (the official AttentionLePE)
    topks=(1, 4, 16, -2),
    auto_pad=True,  # as the official backbone: pad to a multiple of n_win for any image size
    out_indices=(0, 1, 2, 3),  # the official backbone always returns all four stages
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/biformer_small_converted.pth'))
