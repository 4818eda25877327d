"""Every BiFormer config in configs/det, configs/seg and configs/demo loads, builds, runs a loss.

(Other families' configs in the same folders are covered by their own test files.)
The paper configs build with their full BiFormer-S/B backbone (no checkpoint needed: the
Pretrained init runs only when training starts), then with a tiny arch override for one
forward/backward of the loss on demo inputs (mmdet.testing.demo_mm_inputs / SegDataSample).
"""
import copy

import pytest
import torch

from helpers import (build_model, config_paths, det_loss_step_and_predict, load_config,
                      seg_loss_step, seg_predict, tiny_model_cfg)

TINY_ARCH = dict(embed_dims=[32, 64, 128, 256], depths=[1, 1, 1, 1], head_dim=16, mlp_ratio=3)
WIDTHS = {'small': [64, 128, 256, 512], 'base': [96, 192, 384, 768]}


def _configs(*folders):
    return config_paths('biformer', *folders)


DET_CONFIGS = _configs('det') + [c for c in _configs('demo') if 'rcnn' in c or 'retina' in c]
SEG_CONFIGS = _configs('seg') + [c for c in _configs('demo') if 'upernet' in c or 'fpn' in c]


def test_config_inventory():
    assert set(DET_CONFIGS + SEG_CONFIGS) == set(_configs('det', 'seg', 'demo'))
    # demo: RetinaNet, Mask R-CNN, UPerNet, Semantic FPN, and Semantic FPN with torch.compile
    assert len(_configs('det')) == 4 and len(_configs('seg')) == 4 and len(_configs('demo')) == 5


def _load(path):
    cfg = load_config(path)
    assert cfg.model.backbone.type == 'BiFormer'
    # tools/test.py --show-dir and tools/demo.py draw through the visualization hook
    assert 'visualization' in cfg.default_hooks
    return cfg


def _widths(backbone):
    arch = backbone.arch
    return list(arch['embed_dims']) if isinstance(arch, dict) else WIDTHS[arch]


def _tiny(cfg):
    """Swap in the tiny arch and re-wire the channels that follow the backbone widths."""
    return tiny_model_cfg(cfg.model, TINY_ARCH, _widths(cfg.model.backbone), aux_channels=32,
                          uper_channels=64)


def _check_paper_backbone(cfg, path):
    backbone = cfg.model.backbone
    if 'configs/demo' in path:
        assert backbone.init_cfg is None
        return
    init = backbone.init_cfg
    assert init.type == 'Pretrained' and init.checkpoint.startswith('checkpoints/biformer_')
    assert init.checkpoint.endswith(('_small_converted.pth', '_base_converted.pth'))
    assert ('-b_' in path) == (backbone.arch == 'base')
    assert backbone.n_win == (16 if cfg.default_scope == 'mmdet' else 8)
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # AMP only via --amp on GPU


@pytest.mark.parametrize('path', DET_CONFIGS)
def test_det_config(path):
    cfg = _load(path)
    assert cfg.default_scope == 'mmdet'
    _check_paper_backbone(cfg, path)
    if 'configs/det' in path:
        full = build_model(copy.deepcopy(cfg.model), 'mmdet')  # full size, no checkpoint read
        assert list(full.backbone.embed_dims) == _widths(cfg.model.backbone)
        del full
    model = build_model(_tiny(cfg), 'mmdet')
    model.init_weights()
    with_mask = 'mask' in model.__class__.__name__.lower() or hasattr(model, 'roi_head') and \
        getattr(model.roi_head, 'with_mask', False)
    log_vars = det_loss_step_and_predict(model, with_mask)
    assert any(p.grad is not None for p in model.backbone.parameters())
    if with_mask:
        assert 'loss_mask' in log_vars


@pytest.mark.parametrize('path', SEG_CONFIGS)
def test_seg_config(path):
    from mmengine.model.utils import revert_sync_batchnorm
    cfg = _load(path)
    assert cfg.default_scope == 'mmseg'
    assert cfg.model.get('pretrained') is None
    _check_paper_backbone(cfg, path)
    if 'configs/seg' in path:
        full = build_model(copy.deepcopy(cfg.model), 'mmseg')
        assert list(full.backbone.embed_dims) == _widths(cfg.model.backbone)
        del full
    model = revert_sync_batchnorm(build_model(_tiny(cfg), 'mmseg'))
    model.init_weights()
    seg_loss_step(model, 96, 112, num_classes=model.decode_head.num_classes)
    assert any(p.grad is not None for p in model.backbone.parameters())
    seg_predict(model, 96, 112)


def test_roi_features_do_not_depend_on_memory_layout():
    """RoI heads must see the same features whatever the memory layout of the backbone maps.

    mmcv's roi_align kernels index their input as contiguous NCHW; a backbone returning
    permuted (channels-last) views makes FPN emit channels-last maps and Mask R-CNN then pools
    scrambled RoI features (training silently fails: mask/bbox heads never learn).
    """
    cfg = _load('configs/demo/biformer_maskrcnn_synthetic.py')
    model = build_model(_tiny(cfg), 'mmdet').eval()
    torch.manual_seed(0)
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 96, 128))
        rois = torch.tensor([[0., 8., 8., 60., 50.], [0., 30., 20., 120., 90.]])
        extractor = model.roi_head.bbox_roi_extractor
        num = extractor.num_inputs
        pooled = extractor(feats[:num], rois)
        reference = extractor([f.contiguous() for f in feats[:num]], rois)
    torch.testing.assert_close(pooled, reference)
