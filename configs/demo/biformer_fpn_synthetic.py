# CPU demo: a tiny BiFormer + Semantic FPN trained from scratch on the synthetic ADE20K scenes.
# Same model family as configs/seg/biformer_fpn.py, shrunk to train in minutes on 2 CPU cores;
# every change below is a size/speed choice for the demo, not a paper setting.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    '../_base_/datasets/synthetic_ade20k.py',
    '../_base_/schedules/cpu_demo_seg.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

num_classes = 5  # tools/make_synthetic.py ADE20K_CLASSES (ADE ids 1..5)
crop_size = (128, 128)  # as the synthetic dataset base
data_preprocessor = dict(size=crop_size)
neck_channels = 64  # stock 256
model = dict(
    pretrained=None,
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='BiFormer',
        # tiny arch: 1.5 M backbone params (BiFormer-S: 25 M)
        arch=dict(embed_dims=[32, 64, 128, 256], depths=[1, 1, 2, 1], head_dim=16, mlp_ratio=3),
        n_win=4,  # 128x128 crops (ADE20K: 512x512 with n_win=8)
        topks=(1, 4, 16, -2),
        auto_pad=True,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,  # short run from scratch
        init_cfg=None),  # random init: no pretrained weights needed for the demo
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=neck_channels),
    decode_head=dict(in_channels=[neck_channels] * 4, channels=32, num_classes=num_classes))

log_processor = dict(by_epoch=False, window_size=20)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))  # CPU: NCCL needs CUDA
