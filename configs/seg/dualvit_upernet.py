# Dual-ViT-S + UPerNet, ADE20K 160k, 512x512 crops: the official setting (semantic_segmentation
# configs of YehLi/ImageNetModel; official README: 49.2 mIoU single scale).
# Train: python tools/train.py configs/seg/dualvit_upernet.py   (8 GPUs x 2 images officially:
#   bash tools/dist_train.sh configs/seg/dualvit_upernet.py 8; add --amp on GPU)
# The recipe (see the first base) is the official one. One official evaluation detail is NOT
# reproduced (docs/families/dualvit.md): the official CResize rounds the test size to a
# multiple of 16; this config tests at the base's Resize (2048, 512) keep ratio.
_base_ = ['../_base_/recipes/upernet_ade20k_160k.py', '../_base_/models/dualvit.py']

pretrained = _base_.dualvit.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.dualvit,
        # official mmseg stem: SyncBN, trained (BN here; sync_bn below converts it)
        stem_norm_cfg=dict(type='BN', requires_grad=True),
        # official: in eval mode, images with a side over 768 run again on 768x768 tiles whose
        # feature maps are pasted into the whole-image ones
        test_tile_size=768),
    decode_head=dict(in_channels=[64, 128, 320, 448]),
    # official: FCN auxiliary head on stage 3 (320 channels)
    auxiliary_head=dict(in_channels=320, in_index=2))

# the official stem uses SyncBN; mmengine converts BN to SyncBN when distributed
sync_bn = 'torch'

optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))  # official
