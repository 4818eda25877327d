# CPU demo of a plug-in attention (`make demo-plug`): R-50 RetinaNet with NAT's neighborhood
# attention after conv2 of every bottleneck in stages 2-4 (configs/plug/r50-na_retinanet.py),
# trained from scratch on the synthetic COCO shapes. Data, head and schedule are those of the
# BiFormer RetinaNet demo; every change is a size/speed choice for the demo, not a paper setting.
_base_ = ['./biformer_retinanet_synthetic.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,  # from scratch: every stage trains
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,  # from scratch: BN must train (mmdet's config freezes it)
        style='pytorch',
        plugins=[
            dict(
                # objects are 18-80 px, stage-2 maps ~24x20: a 5x5 neighbourhood
                cfg=dict(type='NeighborhoodAttention2d', kernel_size=5),
                stages=(False, True, True, True),
                position='after_conv2')
        ],
        init_cfg=None),  # random init: nothing to download for the demo
    neck=dict(in_channels=[256, 512, 1024, 2048]))
