# BiFormer-S + Semantic FPN, ADE20K 80k, 512x512 crops: the paper's setting (official
# semantic_segmentation configs of rayleizhu/BiFormer; paper 48.9 mIoU single scale).
# Train: python tools/train.py configs/seg/biformer_fpn.py   (8 GPUs x 4 images in the paper:
#   bash tools/dist_train.sh configs/seg/biformer_fpn.py 8; add --amp on GPU)
# The recipe (see the first base) is the official one. Test: the paper resizes the short side to
# 512 *and to a multiple of 32* (its AlignResize, not in mmseg 1.x); the base's Resize (2048, 512)
# keep ratio is used instead, and auto_pad handles sizes that are not multiples of 32 (may differ
# slightly from the paper's numbers).
_base_ = ['../_base_/recipes/semfpn_ade20k_80k.py', '../_base_/models/biformer.py']

pretrained = _base_.biformer.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.biformer,
        n_win=8,  # official ADE20K configs: 8x8 regions
        drop_path_rate=0.15,  # official Semantic FPN configs: S 0.15, B 0.3
        norm_eval=False),  # official: backbone BN trains (SyncBN across GPUs, see sync_bn below)
    neck=dict(in_channels=[64, 128, 256, 512]))

# the official backbone converts its BN to SyncBN; mmengine does that when distributed
sync_bn = 'torch'
