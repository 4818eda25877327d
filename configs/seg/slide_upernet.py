# Slide-Swin-T + UPerNet, ADE20K 160k, 512x512 crops: the paper's setting (the paper's result
# figure exp_seg.png: 45.67 mIoU / 57.13 mAcc, 60M params, 946G FLOPs).
# Train: python tools/train.py configs/seg/slide_upernet.py
#   (8 GPUs x 2 images: bash tools/dist_train.sh configs/seg/slide_upernet.py 8)
# The base is mmseg's Swin-T UPerNet config (Swin's recipe: AdamW 6e-5, wd 0.01, poly, 160k).
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    '../_base_/models/slide.py'
]

pretrained = _base_.slide_swin.init_cfg.checkpoint

model = dict(
    pretrained=None,
    backbone=dict(
        _base_.slide_swin,
        drop_path_rate=0.3),  # Swin-T UPerNet value (mmseg base)
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

# bias tables and norms without weight decay, as the official training code
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
