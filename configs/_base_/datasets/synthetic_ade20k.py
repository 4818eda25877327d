# Synthetic ADE20K-layout semantic dataset written by tools/make_synthetic.py (`make demo-seg`
# creates it): images/{training,validation}/*.jpg, annotations/{training,validation}/*.png
# (mode L, 0 = unlabelled, 1..5 = the first five ADE20K classes). Stock ADE20KDataset
# (reduce_zero_label) + IoUMetric; only the data root, the class subset and the image scale differ
# from mmseg::_base_/datasets/ade20k.py.
dataset_type = 'ADE20KDataset'
data_root = 'data/synthetic/ade20k'
# a subset of ADE20KDataset.METAINFO classes: the dataset builds the label map (other ids -> 255)
# and IoUMetric reports only these classes
metainfo = dict(classes=('wall', 'building', 'sky', 'floor', 'tree'))
crop_size = (128, 128)  # stock ADE20K: (512, 512)
img_scale = (256, 128)  # stock ADE20K: (2048, 512); synthetic images are 128-224 x 96-160 px

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
# CPU: no worker processes (with num_workers=0 PyTorch raises unless persistent_workers=False)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
