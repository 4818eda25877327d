"""Every configs/{det,seg}/groupmixformer*.py loads, states its origin, builds, steps, predicts.

No official detection / segmentation settings exist (the official repository released
classification only), so each header must say these are mmattn's settings. Each config builds
once at full size (GroupMixFormer-S,
no checkpoint read: the Pretrained init runs only when training starts), then with a tiny arch
for one loss + backward and one prediction on demo inputs whose sides are not multiples of 32.
"""
import copy
import os.path as osp

import pytest

from helpers import (build_model, config_header, config_paths, det_loss_step_and_predict,
                      load_config, seg_loss_step, seg_predict, tiny_model_cfg)

TINY_ARCH = dict(embed_dims=[20, 40, 60, 80], depths=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2])
S_WIDTHS = [80, 160, 320, 320]


def _configs(folder):
    return config_paths('groupmixformer', folder)


def test_config_inventory():
    assert [osp.basename(c) for c in _configs('det')] == [
        'groupmixformer_maskrcnn.py', 'groupmixformer_retinanet.py']
    assert [osp.basename(c) for c in _configs('seg')] == [
        'groupmixformer_fpn.py', 'groupmixformer_upernet.py']


def _load(path, scope):
    cfg = load_config(path, scope)
    header = config_header(path)
    assert "mmattn's settings, NOT" in header and 'the authors' in header
    backbone = cfg.model.backbone
    assert backbone.type == 'GroupMixFormer' and backbone.arch == 'small'
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint='checkpoints/groupmixformer_small.pth')
    assert cfg.sync_bn == 'torch'  # SyncBN as the official model when distributed
    return cfg


def _tiny(model_cfg):
    return tiny_model_cfg(model_cfg, TINY_ARCH, S_WIDTHS, aux_channels=32, uper_channels=64)


@pytest.mark.parametrize('path', _configs('det'))
def test_det_config_builds_steps_and_predicts(path):
    cfg = _load(path, 'mmdet')
    # the official model needs sides divisible by 32
    assert cfg.model.data_preprocessor.pad_size_divisor == 32
    full = build_model(copy.deepcopy(cfg.model), 'mmdet')
    assert full.backbone.embed_dims == S_WIDTHS and list(cfg.model.neck.in_channels) == S_WIDTHS
    del full
    opt = cfg.optim_wrapper.optimizer
    if 'maskrcnn' in path:  # CoaT's Mask R-CNN recipe
        assert (opt.lr, opt.weight_decay, cfg.train_cfg.max_epochs) == (1e-4, 0.05, 12)
        assert cfg.param_scheduler[1].milestones == [8, 11]
        assert 'RandomChoice' in [t.type for t in cfg.train_dataloader.dataset.pipeline]
    else:  # PVT RetinaNet 1x protocol
        assert (opt.lr, opt.weight_decay, cfg.train_cfg.max_epochs) == (1e-4, 1e-4, 12)
    model = build_model(_tiny(cfg.model), 'mmdet')
    model.init_weights()
    with_mask = 'maskrcnn' in path
    # sides not multiples of 32
    log_vars = det_loss_step_and_predict(model, with_mask,
                                         image_shapes=[(3, 100, 150), (3, 90, 120)],
                                         predict_shape=(3, 70, 99))
    assert model.backbone.stages[3].blocks[0].attn.qkv.weight.grad is not None
    assert ('loss_mask' in log_vars) == with_mask


@pytest.mark.parametrize('path', _configs('seg'))
def test_seg_config_builds_steps_and_predicts(path):
    from mmengine.model.utils import revert_sync_batchnorm
    cfg = _load(path, 'mmseg')
    assert cfg.model.get('pretrained') is None
    full = build_model(copy.deepcopy(cfg.model), 'mmseg')
    assert full.backbone.embed_dims == S_WIDTHS
    del full
    opt = cfg.optim_wrapper.optimizer
    if 'upernet' in path:  # Swin UPerNet protocol
        assert (opt.lr, opt.weight_decay, cfg.train_cfg.max_iters) == (6e-5, 0.01, 160000)
        assert cfg.model.auxiliary_head.in_index == 2
    else:  # PVT Semantic FPN protocol
        assert (opt.lr, opt.weight_decay, cfg.train_cfg.max_iters) == (1e-4, 1e-4, 40000)
    assert cfg.train_dataloader.batch_size == 2
    model_cfg = _tiny(cfg.model)
    model_cfg.data_preprocessor.size = (90, 110)  # the test input instead of 512x512
    model = revert_sync_batchnorm(build_model(model_cfg, 'mmseg'))
    model.init_weights()
    seg_loss_step(model, 90, 110)
    assert model.backbone.stages[0].blocks[0].attn.crpe[2].weight.grad is not None
    seg_predict(model, 90, 110)
