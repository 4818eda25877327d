# Slide-Transformer backbones (LeapLabTHU/Slide-Transformer) shared by configs/det/slide*.py and
# configs/seg/slide*.py: Slide-PVT-S (the variant in all three of the paper's PVT tables) and
# Slide-Swin-T. Each config sets its drop path (and kernel size where it names it).
# No official checkpoints were released (the repository has no download link), so both read
# weights you pretrain yourself; init_cfg reads them only when training starts (init_weights).
# Each config copies the path into its top-level `pretrained`.
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

# Only Slide-Swin code was released: SlidePVT is PVT-S with slide attention in stages 1-2 and
# k = 3, inferred from the paper's parameter counts (PVT-S -> Slide-PVT-S loses 1.8M, what the
# SRA reduction convs of stages 1-2 hold). Pretrain a SlidePVT('small') on ImageNet and save its
# state dict (mmattn names) at the path below.
slide_pvt = dict(
    _delete_=True,  # replaces the base config's ResNet backbone whole
    type='SlidePVT',
    arch='small',
    out_indices=(0, 1, 2, 3),
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/slide_pvt_small.pth'))

# An ImageNet Slide-Swin-T trained with the released code: convert it once with
#   python tools/convert_ckpt.py slide_swin ckpt_epoch_299.pth checkpoints/slide_swin_tiny.pth \
#       --trusted   (the file pickles a yacs CfgNode config, which a weights-only load refuses)
# The released code runs stages 3-4 with global attention (its yaml WINDOW_SIZE 56 is clamped to
# the map); the 27x27 stage-3 bias table is resized bicubically to window 7's 13x13 when loading,
# as the official load_pretrained does for size mismatches: not numerically exact.
slide_swin = dict(
    _delete_=True,  # replaces the base config's ResNet backbone whole
    type='SlideSwin',
    arch='tiny',  # C=96, depths 2-2-6-2, heads 3-6-12-24
    # the paper's detection and segmentation FLOPs (Mask R-CNN 268G against Swin-T's 267G) match
    # Swin's window 7 with shifts in stages 3-4, not the released global attention
    attn_mode='window',
    window_size=7,
    out_indices=(0, 1, 2, 3),
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/slide_swin_tiny.pth'))
