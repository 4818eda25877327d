"""Every BiFormer config in configs/det, configs/seg and configs/demo loads, builds, runs a loss.

(Other families' configs in the same folders are covered by their own test files.)
The paper configs build with their full BiFormer-S/B backbone (no checkpoint needed: the
Pretrained init runs only when training starts), then with a tiny arch override for one
forward/backward of the loss on demo inputs (mmdet.testing.demo_mm_inputs / SegDataSample).
"""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import REPO_ROOT

TINY_ARCH = dict(embed_dims=[32, 64, 128, 256], depths=[1, 1, 1, 1], head_dim=16, mlp_ratio=3)
WIDTHS = {'small': [64, 128, 256, 512], 'base': [96, 192, 384, 768]}


def _configs(*folders):
    return sorted(
        osp.relpath(p, REPO_ROOT) for f in folders
        for p in glob.glob(osp.join(REPO_ROOT, 'configs', f, 'biformer*.py')))


DET_CONFIGS = _configs('det') + [c for c in _configs('demo') if 'rcnn' in c or 'retina' in c]
SEG_CONFIGS = _configs('seg') + [c for c in _configs('demo') if 'upernet' in c or 'fpn' in c]


def test_config_inventory():
    assert set(DET_CONFIGS + SEG_CONFIGS) == set(_configs('det', 'seg', 'demo'))
    assert len(_configs('det')) == 4 and len(_configs('seg')) == 4 and len(_configs('demo')) == 4


def _load(path):
    cfg = Config.fromfile(osp.join(REPO_ROOT, path))
    assert cfg.custom_imports == dict(imports=['mmattn'], allow_failed_imports=False)
    assert cfg.model.backbone.type == 'BiFormer'
    # tools/test.py --show-dir and tools/demo.py draw through the visualization hook
    assert 'visualization' in cfg.default_hooks
    return cfg


def _widths(backbone):
    arch = backbone.arch
    return list(arch['embed_dims']) if isinstance(arch, dict) else WIDTHS[arch]


def _tiny(cfg):
    """Swap in the tiny arch and re-wire the channels that follow the backbone widths."""
    model = copy.deepcopy(cfg.model)
    old = _widths(model.backbone)
    new = TINY_ARCH['embed_dims']
    model.backbone.arch = copy.deepcopy(TINY_ARCH)
    model.backbone.init_cfg = None
    for key in ('neck', 'decode_head'):
        if key in model and list(model[key].get('in_channels', [])) == old:
            model[key].in_channels = new
    aux = model.get('auxiliary_head')
    if aux is not None:
        assert aux.in_channels == old[aux.in_index]
        aux.in_channels = new[aux.in_index]
        aux.channels = min(aux.channels, 32)
    if model.get('decode_head', {}).get('type') == 'UPerHead':
        model.decode_head.channels = min(model.decode_head.channels, 64)  # speed only
    return model


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


def _build(model_cfg, scope):
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS.build(model_cfg)


@pytest.mark.parametrize('path', DET_CONFIGS)
def test_det_config(path):
    from mmdet.testing import demo_mm_inputs
    cfg = _load(path)
    assert cfg.default_scope == 'mmdet'
    _check_paper_backbone(cfg, path)
    if 'configs/det' in path:
        full = _build(copy.deepcopy(cfg.model), 'mmdet')  # full size, no checkpoint read
        assert list(full.backbone.embed_dims) == _widths(cfg.model.backbone)
        del full
    model = _build(_tiny(cfg), 'mmdet')
    model.init_weights()
    model.train()
    with_mask = 'mask' in model.__class__.__name__.lower() or hasattr(model, 'roi_head') and \
        getattr(model.roi_head, 'with_mask', False)
    num_classes = (model.roi_head.bbox_head.num_classes
                   if hasattr(model, 'roi_head') else model.bbox_head.num_classes)
    torch.manual_seed(0)
    data = demo_mm_inputs(2, image_shapes=[(3, 128, 160), (3, 96, 128)],
                          num_classes=num_classes, with_mask=with_mask)
    data = model.data_preprocessor(data, True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None for p in model.backbone.parameters())
    if with_mask:
        assert 'loss_mask' in log_vars
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            demo_mm_inputs(1, image_shapes=[(3, 112, 150)], num_classes=num_classes), False)
        results = model(**data, mode='predict')
    assert len(results) == 1 and 'pred_instances' in results[0]


@pytest.mark.parametrize('path', SEG_CONFIGS)
def test_seg_config(path):
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    cfg = _load(path)
    assert cfg.default_scope == 'mmseg'
    assert cfg.model.get('pretrained') is None
    _check_paper_backbone(cfg, path)
    if 'configs/seg' in path:
        full = _build(copy.deepcopy(cfg.model), 'mmseg')
        assert list(full.backbone.embed_dims) == _widths(cfg.model.backbone)
        del full
    model = revert_sync_batchnorm(_build(_tiny(cfg), 'mmseg'))
    model.init_weights()
    model.train()
    num_classes = model.decode_head.num_classes
    torch.manual_seed(0)
    h, w = 96, 112
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w)))
        samples.append(sample)
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=inputs[:1], data_samples=samples[:1]), False)
        results = model(**data, mode='predict')
    assert results[0].pred_sem_seg.data.shape[-2:] == (h, w)


def test_roi_features_do_not_depend_on_memory_layout():
    """RoI heads must see the same features whatever the memory layout of the backbone maps.

    mmcv's roi_align kernels index their input as contiguous NCHW; a backbone returning
    permuted (channels-last) views makes FPN emit channels-last maps and Mask R-CNN then pools
    scrambled RoI features (training silently fails: mask/bbox heads never learn).
    """
    cfg = _load('configs/demo/biformer_maskrcnn_synthetic.py')
    model = _build(_tiny(cfg), 'mmdet').eval()
    torch.manual_seed(0)
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 96, 128))
        rois = torch.tensor([[0., 8., 8., 60., 50.], [0., 30., 20., 120., 90.]])
        extractor = model.roi_head.bbox_roi_extractor
        num = extractor.num_inputs
        pooled = extractor(feats[:num], rois)
        reference = extractor([f.contiguous() for f in feats[:num]], rois)
    torch.testing.assert_close(pooled, reference)
