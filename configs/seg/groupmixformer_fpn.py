# GroupMixFormer-S + Semantic FPN, ADE20K 40k, 512x512 crops. mmattn's settings, NOT the authors':
# the official repository released classification only (segmentation/segmentation.md says "wip";
# issue #1 asking for the head is unanswered), so there is no official config or number. This is
# the standard PVT Semantic FPN protocol (the first base).
# Train: python tools/train.py configs/seg/groupmixformer_fpn.py
#   (bash tools/dist_train.sh configs/seg/groupmixformer_fpn.py 8; add --amp on GPU)
_base_ = ['../_base_/recipes/semfpn_ade20k_40k.py', '../_base_/models/groupmixformer.py']

pretrained = _base_.groupmixformer.init_cfg.checkpoint

model = dict(
    backbone=dict(
        _base_.groupmixformer,
        drop_path_rate=0.1),  # mmattn choice: no official value; short 40k schedule
    neck=dict(in_channels=[80, 160, 320, 320]))  # FPN in_channels = embedding_dims of S

train_dataloader = dict(batch_size=2)  # PVT protocol: 2/GPU x 8 GPUs = 16 (the base is 4 x 4)
