"""Every configs/{det,seg}/dualvit*.py loads, carries the official settings it claims, and runs.

The full-size Dual-ViT-S/B backbone of each config is built on the meta device (widths and
parameter count of the official downstream backbone); the detector / segmentor is built with a
tiny arch override and runs one loss step (backward included) and one prediction on demo inputs.
"""
import copy
import os.path as osp

import pytest
import torch

from helpers import (build_model, config_header, config_paths, det_loss_step_and_predict,
                      load_config, seg_loss_step, seg_predict, tiny_model_cfg)

TINY = dict(stem_hidden=8, embed_dims=[16, 32, 48, 64], num_heads=[1, 1, 2, 2],
            depths=[1, 1, 1, 2], mlp_ratios=[2, 2, 2, 2])
WIDTHS = {'small': [64, 128, 320, 448], 'base': [64, 128, 320, 512]}
# official downstream backbone (no classification head)
BACKBONE_PARAMS = {'small': 21.741, 'base': 38.448}


def _configs(folder):
    return config_paths('dualvit', folder)


def test_config_inventory():
    assert [osp.basename(p) for p in _configs('det')] == [
        'dualvit-b_maskrcnn.py', 'dualvit-b_retinanet.py', 'dualvit_maskrcnn.py',
        'dualvit_retinanet.py']
    assert [osp.basename(p) for p in _configs('seg')] == [
        'dualvit-b_fpn.py', 'dualvit-b_upernet.py', 'dualvit_fpn.py', 'dualvit_upernet.py']


def _load_and_check(path, scope):
    cfg = load_config(path, scope)
    backbone = cfg.model.backbone
    arch = 'base' if '-b_' in path else 'small'
    assert backbone.type == 'DualViT' and backbone.arch == arch
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    checkpoint = f'checkpoints/dualvit_{arch[0]}.pth'
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint)
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # fp16 only via --amp on a GPU
    assert ('NOT an official setting' in config_header(path)) == ('fpn' in path)
    with torch.device('meta'):
        full = build_model(copy.deepcopy(backbone), scope)
    assert full.embed_dims == WIDTHS[arch]
    assert round(sum(p.numel() for p in full.parameters()) / 1e6, 3) == BACKBONE_PARAMS[arch]
    return cfg, arch


def _tiny(model_cfg, arch):
    return tiny_model_cfg(model_cfg, TINY, WIDTHS[arch], aux_channels=16, uper_channels=32)


@pytest.mark.parametrize('path', _configs('det'))
def test_det_config(path):
    cfg, arch = _load_and_check(path, 'mmdet')
    backbone, opt = cfg.model.backbone, cfg.optim_wrapper.optimizer
    # official COCO configs: 1x schedule, AdamW (1e-4 RetinaNet, 2e-4 Mask R-CNN), wd 1e-4,
    # drop path 0.15, frozen stem BN affine with updating statistics, find_unused_parameters
    retina = 'retinanet' in path
    assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 1e-4 if retina else 2e-4, 1e-4)
    assert backbone.drop_path_rate == 0.15 and not backbone.norm_eval
    assert backbone.stem_norm_cfg == dict(type='BN', requires_grad=False)
    assert cfg.train_cfg.max_epochs == 12 and cfg.find_unused_parameters
    assert cfg.param_scheduler[0].end == 500 and cfg.param_scheduler[1].milestones == [8, 11]
    assert list(cfg.model.neck.in_channels) == WIDTHS[arch]
    if retina:
        assert cfg.model.neck.start_level == 1 and cfg.model.neck.add_extra_convs == 'on_input'

    model = build_model(_tiny(cfg.model, arch), 'mmdet')
    model.init_weights()
    log_vars = det_loss_step_and_predict(model, with_mask=not retina)
    assert model.backbone.block1[0].attn.kv_proxy.weight.grad is not None
    assert retina or 'loss_mask' in log_vars


@pytest.mark.parametrize('path', _configs('seg'))
def test_seg_config(path):
    from mmengine.model.utils import revert_sync_batchnorm
    cfg, arch = _load_and_check(path, 'mmseg')
    assert cfg.model.get('pretrained') is None and cfg.sync_bn == 'torch'
    backbone, opt = cfg.model.backbone, cfg.optim_wrapper.optimizer
    if 'upernet' in path:  # official ADE20K UPerNet config
        assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 6e-5, 0.01)
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys == dict(norm=dict(decay_mult=0.))
        assert backbone.drop_path_rate == (0.3 if arch == 'base' else 0.15)
        assert cfg.train_cfg.max_iters == 160000 and cfg.train_dataloader.batch_size == 2
        assert cfg.param_scheduler[0].end == 1500 and cfg.param_scheduler[1].power == 1.0
        aux = cfg.model.auxiliary_head
        assert (aux.in_channels, aux.in_index, aux.channels) == (320, 2, 256)
        assert aux.loss_decode.loss_weight == 0.4 and cfg.model.decode_head.channels == 512
        assert backbone.test_tile_size == 768  # official test-time tiling on 768x768 crops
    else:
        assert backbone.test_tile_size is None

    model_cfg = _tiny(cfg.model, arch)
    model_cfg.backbone.test_tile_size = 64  # the tiled eval path on the 96x112 test input
    model_cfg.data_preprocessor.size = (96, 112)  # the test input, instead of 512x512
    model = revert_sync_batchnorm(build_model(model_cfg, 'mmseg'))
    model.init_weights()
    seg_loss_step(model, 96, 112)
    assert model.backbone.semantic_init.query.grad is not None
    seg_predict(model, 96, 112)
