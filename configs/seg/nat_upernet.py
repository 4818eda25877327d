# NAT-Tiny + UPerNet, ADE20K 160k, 512x512 crops: the paper's setting (official segmentation
# configs of SHI-Labs/Neighborhood-Attention-Transformer; paper: 47.1 mIoU single scale / 48.4
# multi-scale+flip, 58M params, 934G FLOPs).
# Train: python tools/train.py configs/seg/nat_upernet.py   (8 GPUs x 2 images in the paper:
#   bash tools/dist_train.sh configs/seg/nat_upernet.py 8; add --amp on GPU)
# The recipe (see the first base) is the official one.
_base_ = ['../_base_/recipes/upernet_ade20k_160k.py', '../_base_/models/nat.py']

pretrained = _base_.nat.init_cfg.checkpoint

model = dict(
    backbone=dict(_base_.nat, drop_path_rate=0.3),  # official UPerNet NAT-T: 0.3
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    # official: FCN auxiliary head on level 2 (4E = 256 channels), 256 ch, loss weight 0.4
    auxiliary_head=dict(in_channels=256, in_index=2))

# official: no decay for 'rpb' and 'norm' parameters
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'rpb': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.)
}))
