# BiFormer-S + UPerNet, ADE20K 160k, 512x512 crops: the paper's setting (official
# semantic_segmentation configs of rayleizhu/BiFormer; paper 49.8 mIoU single scale).
# Train: python tools/train.py configs/seg/biformer_upernet.py   (8 GPUs x 2 images in the paper:
#   bash tools/dist_train.sh configs/seg/biformer_upernet.py 8; add --amp on GPU)
# The recipe (UniFormer/CSWin's, see the first base) is the official one; the test images
# (Resize (2048, 512) keep ratio) are not multiples of 32: auto_pad pads them inside.
_base_ = ['../_base_/recipes/upernet_ade20k_160k.py', '../_base_/models/biformer.py']

pretrained = _base_.biformer.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.biformer,
        n_win=8,  # official ADE20K configs: 8x8 regions
        drop_path_rate=0.3,  # official UPerNet configs: S 0.3, B 0.4
        norm_eval=False),  # official: backbone BN trains (SyncBN across GPUs, see sync_bn below)
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256, in_index=2))  # official: FCN aux head on stage 3

# the official backbone converts its BN to SyncBN; mmengine does that when distributed
# (ignored on a single process, where the heads' SyncBN are reverted to BN as well)
sync_bn = 'torch'

optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))  # official
