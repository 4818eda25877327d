# GroupMixFormer-S + UPerNet, ADE20K 160k, 512x512 crops. mmattn's settings, NOT the authors': the
# official repository released classification only (segmentation/segmentation.md says "wip"; issue
# #1 asking for the head is unanswered), and the abstract's 51.2 mIoU for GroupMixFormer-B names
# neither head nor schedule. This is the standard Swin UPerNet protocol.
# Train: python tools/train.py configs/seg/groupmixformer_upernet.py
#   (bash tools/dist_train.sh configs/seg/groupmixformer_upernet.py 8; add --amp on GPU)
# Test widths that are not multiples of 32 are padded inside the backbone.
_base_ = ['../_base_/recipes/upernet_ade20k_160k.py', '../_base_/models/groupmixformer.py']

pretrained = _base_.groupmixformer.init_cfg.checkpoint

model = dict(
    backbone=dict(_base_.groupmixformer),
    decode_head=dict(in_channels=[80, 160, 320, 320]),
    # Swin protocol: FCN auxiliary head on stage 2 (out index 2, 320 channels)
    auxiliary_head=dict(in_channels=320, in_index=2))

# no decay on norms and biases, as in the official ImageNet recipe (every 1-D parameter and bias)
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
