# mmseg's Semantic FPN on ADE20K 512x512 crops with PVT's recipe (the PVT paper, which the
# Slide-PVT paper follows; GroupMixFormer, which has no official one, uses it too): AdamW lr 1e-4,
# wd 1e-4; 40k iterations, poly power 0.9. FPN(4 inputs -> 256, 4 outputs) + FPNHead(128
# channels) are the base's. fp16 only via --amp on a GPU. Each config adds its backbone, the
# neck's input widths and its batch size (the base's 4 per GPU unless it says otherwise).
_base_ = ['mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py']

model = dict(
    pretrained=None,  # the base's ResNet 'open-mmlab://resnet50_v1c' would reach the backbone
    decode_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))

param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=40000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=4000))
