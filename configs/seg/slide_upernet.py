# Slide-Swin-T + UPerNet, ADE20K 160k, 512x512 crops: the paper's setting
# (specs/slide.md §4.4: paper 45.67 mIoU / 57.13 mAcc, 60M params, 946G FLOPs).
# Train: python tools/train.py configs/seg/slide_upernet.py
#   (8 GPUs x 2 images: bash tools/dist_train.sh configs/seg/slide_upernet.py 8)
# The base is mmseg's Swin-T UPerNet config (Swin's recipe: AdamW 6e-5, wd 0.01, poly, 160k).
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

# No official checkpoints exist (§0); convert your own ImageNet model once with
#   python tools/convert_ckpt.py slide_swin ckpt.pth checkpoints/slide_swin_tiny.pth --trusted
pretrained = 'checkpoints/slide_swin_tiny.pth'

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='SlideSwin',
        arch='tiny',  # §2.5
        attn_mode='window',  # §2.4: window 7 with shifts in stages 3-4
        window_size=7,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,  # Swin-T UPerNet value (mmseg base)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

# §6.13: bias tables and norms without weight decay
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
