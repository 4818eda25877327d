# CPU demo: a tiny BiFormer + RetinaNet trained from scratch on the synthetic COCO shapes.
# Same model family as configs/det/biformer_retinanet.py, shrunk to train in minutes on 2 CPU
# cores; every change below is a size/speed choice for the demo, not a paper setting.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/synthetic_coco_instance.py',
    '../_base_/schedules/cpu_demo_det.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

num_classes = 3  # tools/make_synthetic.py COCO_CLASSES
neck_channels = 64  # stock 256
model = dict(
    backbone=dict(
        _delete_=True,
        type='BiFormer',
        # tiny arch: 1.5 M backbone params (BiFormer-S: 25 M)
        arch=dict(embed_dims=[32, 64, 128, 256], depths=[1, 1, 2, 1], head_dim=16, mlp_ratio=3),
        n_win=4,  # images are ~192x160 (COCO: 1333x800 with n_win=16)
        topks=(1, 4, 16, -2),
        auto_pad=True,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,  # short run from scratch
        norm_eval=False,  # from scratch: BN must train (the paper setting freezes it)
        init_cfg=None),  # random init: no pretrained weights needed for the demo
    neck=dict(
        in_channels=[32, 64, 128, 256],
        out_channels=neck_channels,
        start_level=1,
        add_extra_convs='on_input'),
    bbox_head=dict(
        num_classes=num_classes,
        in_channels=neck_channels,
        feat_channels=neck_channels,
        stacked_convs=2,  # stock 4
        # objects are 18-80 px: anchors 16..256 px instead of 32..512
        anchor_generator=dict(octave_base_scale=2)),
    test_cfg=dict(score_thr=0.05, max_per_img=20))
find_unused_parameters = True  # stage-1 output unused (start_level=1); matters only in DDP

train_dataloader = dict(batch_size=4)
val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=4, max_keep_ckpts=1))
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=True)
env_cfg = dict(dist_cfg=dict(backend='gloo'))  # CPU: NCCL needs CUDA
