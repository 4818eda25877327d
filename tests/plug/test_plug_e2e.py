"""Plug-in attention through the real Runner: 2 train iterations + validation each.

tools/train.py runs in process on the synthetic data of conftest.py. The backbones are the
ones of configs/plug (R-50 with neighborhood-attention plugins; MiT-B0 with bi-level routing
attention swapped in), without their ImageNet init_cfg (nothing can be downloaded here), inside
the demo RetinaNet / UPerNet configs that provide the synthetic data and a CPU schedule.
"""
import math
import os.path as osp

import pytest
import torch

from helpers import REPO_ROOT, ade_runner_options, coco_runner_options, load_config, load_tool
from mmattn.plug import AttentionSwap, NeighborhoodAttention2d

train_tool = load_tool('train')


def _plug_backbone(name):
    backbone = load_config(f'configs/plug/{name}').model.backbone.to_dict()
    host = backbone['backbone'] if backbone['type'] == 'AttentionSwap' else backbone
    host['init_cfg'] = None
    return backbone


def _config(tmp_path, demo, backbone, head_key, widths):
    config = tmp_path / 'plug_demo.py'
    base = osp.join(REPO_ROOT, 'configs', 'demo', demo)
    config.write_text(f'_base_ = [{base!r}]\n'
                      f'model = dict(backbone=dict(_delete_=True, **{backbone!r}),\n'
                      f'             {head_key}=dict(in_channels={widths!r}))\n')
    return str(config)


@pytest.mark.slow
def test_r50_neighborhood_plugins_retinanet_train_val(synthetic_data, tmp_path):
    backbone = _plug_backbone('r50-na_retinanet.py')
    backbone.update(frozen_stages=-1, norm_eval=False)  # from scratch
    config = _config(tmp_path, 'biformer_retinanet_synthetic.py', backbone, 'neck',
                     [256, 512, 1024, 2048])
    runner = train_tool.main([
        config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        *coco_runner_options(synthetic_data, 'model.test_cfg.score_thr')])
    assert runner.iter == 2
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    metrics = {k for k in runner.message_hub.log_scalars if k.startswith('val/')}
    assert {'val/coco/bbox_mAP', 'val/coco/bbox_mAP_50'} <= metrics, metrics
    blocks = [m for m in runner.model.backbone.modules() if isinstance(m, NeighborhoodAttention2d)]
    assert len(blocks) == 13
    # the zero-initialised output projections trained: the blocks now change their input
    assert all(b.attn.proj.weight.abs().sum() > 0 for b in blocks)


@pytest.mark.slow
def test_mit_b0_routing_swap_upernet_train_val(synthetic_data, tmp_path):
    backbone = _plug_backbone('mit-b0-bra_segformer.py')
    backbone['attn']['n_win'] = 2  # synthetic crops are small: stage-4 maps are a few pixels
    config = _config(tmp_path, 'biformer_upernet_synthetic.py', backbone, 'decode_head',
                     [32, 64, 160, 256])
    runner = train_tool.main([
        config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        'model.auxiliary_head.in_channels=160', *ade_runner_options(synthetic_data)])
    assert runner.iter == 2 and isinstance(runner.model.backbone, AttentionSwap)
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    metrics = {k for k in runner.message_hub.log_scalars if k.startswith('val/')}
    assert {'val/mIoU', 'val/aAcc'} <= metrics, metrics
    swapped = runner.model.backbone.swapped
    assert len(swapped) == 4 and all(b.attn.proj.weight.abs().sum() > 0 for _, b in swapped)
    # the checkpoint holds the swapped blocks under the host's attention names
    state = torch.load(tmp_path / 'work' / 'iter_2.pth', map_location='cpu',
                       weights_only=True)['state_dict']
    assert 'backbone.backbone.layers.2.1.0.attn.attn.qkv.weight' in state
