"""Dual-ViT + Mask R-CNN through the stock Runner (tools/train.py, in process): 2 training
iterations and a validation with CocoMetric on the synthetic COCO of conftest.py. The demo
BiFormer Mask R-CNN config provides data, heads and schedule; a config written to tmp_path swaps
in a tiny DualViT with the official detection stem BN setting (affine frozen, statistics
updating). The saved detector checkpoint then initialises a DualViT through init_cfg.
"""
import math
import os.path as osp

import pytest
import torch

from helpers import REPO_ROOT, coco_runner_options, load_tool, val_metrics

train_tool = load_tool('train')

TINY = dict(stem_hidden=8, embed_dims=[16, 32, 48, 64], num_heads=[1, 1, 2, 2],
            depths=[1, 1, 2, 2], mlp_ratios=[4, 4, 4, 3])


@pytest.mark.slow
def test_dualvit_maskrcnn_train_val(synthetic_data, tmp_path):
    from mmattn.models import DualViT
    backbone = dict(type='DualViT', arch=TINY, out_indices=(0, 1, 2, 3),
                    stem_norm_cfg=dict(type='BN', requires_grad=False), init_cfg=None)
    config = tmp_path / 'dualvit_demo.py'
    base = osp.join(REPO_ROOT, 'configs', 'demo', 'biformer_maskrcnn_synthetic.py')
    config.write_text(f'_base_ = [{base!r}]\n'
                      f'model = dict(backbone=dict(_delete_=True, **{backbone!r}),\n'
                      f'             neck=dict(in_channels={TINY["embed_dims"]!r}))\n')
    runner = train_tool.main([
        str(config), '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        *coco_runner_options(synthetic_data, 'model.test_cfg.rcnn.score_thr')])
    model = runner.model.backbone
    assert runner.iter == 2 and type(model) is DualViT
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    metrics = val_metrics(runner)
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert key in metrics, metrics
    bn = model.patch_embed1.conv[1]
    assert not bn.weight.requires_grad and bn.num_batches_tracked.item() == 2
    # the saved detector checkpoint initialises a DualViT through init_cfg (prefix 'backbone.')
    fresh = DualViT(arch=TINY, init_cfg=dict(type='Pretrained',
                                             checkpoint=str(tmp_path / 'work' / 'epoch_1.pth'),
                                             prefix='backbone.'))
    fresh.init_weights()
    trained = model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())
