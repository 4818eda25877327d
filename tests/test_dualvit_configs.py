"""Every configs/{det,seg}/dualvit*.py loads, carries the spec settings it claims, and runs.

The full-size Dual-ViT-S/B backbone of each config is built on the meta device (widths and
parameter count, spec dualvit.md §1.2); the detector / segmentor is built with a tiny arch
override and runs one loss step (backward included) and one prediction on demo inputs.
"""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import REPO_ROOT

TINY = dict(stem_hidden=8, embed_dims=[16, 32, 48, 64], num_heads=[1, 1, 2, 2],
            depths=[1, 1, 1, 2], mlp_ratios=[2, 2, 2, 2])
WIDTHS = {'small': [64, 128, 320, 448], 'base': [64, 128, 320, 512]}
BACKBONE_PARAMS = {'small': 21.741, 'base': 38.448}  # §1.2, downstream backbone


def _configs(folder):
    return sorted(osp.relpath(p, REPO_ROOT)
                  for p in glob.glob(osp.join(REPO_ROOT, 'configs', folder, 'dualvit*.py')))


def test_config_inventory():
    assert [osp.basename(p) for p in _configs('det')] == [
        'dualvit-b_maskrcnn.py', 'dualvit-b_retinanet.py', 'dualvit_maskrcnn.py',
        'dualvit_retinanet.py']
    assert [osp.basename(p) for p in _configs('seg')] == [
        'dualvit-b_fpn.py', 'dualvit-b_upernet.py', 'dualvit_fpn.py', 'dualvit_upernet.py']


def _build(model_cfg, scope):
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS.build(model_cfg)


def _load_and_check(path, scope):
    cfg = Config.fromfile(osp.join(REPO_ROOT, path))
    assert cfg.default_scope == scope
    assert cfg.custom_imports == dict(imports=['mmattn'], allow_failed_imports=False)
    backbone = cfg.model.backbone
    arch = 'base' if '-b_' in path else 'small'
    assert backbone.type == 'DualViT' and backbone.arch == arch
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    checkpoint = f'checkpoints/dualvit_{arch[0]}.pth'
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint)
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # fp16 only via --amp on a GPU
    with open(osp.join(REPO_ROOT, path)) as f:
        header = f.read().split('_base_')[0]
    assert ('NOT an official setting' in header) == ('fpn' in path)
    with torch.device('meta'):
        full = _build(copy.deepcopy(backbone), scope)
    assert full.embed_dims == WIDTHS[arch]
    assert round(sum(p.numel() for p in full.parameters()) / 1e6, 3) == BACKBONE_PARAMS[arch]
    return cfg, arch


def _tiny(model_cfg, arch):
    model = copy.deepcopy(model_cfg)
    model.backbone.arch = copy.deepcopy(TINY)
    model.backbone.init_cfg = None
    widths = WIDTHS[arch]
    for key in ('neck', 'decode_head'):
        if key in model and list(model[key].get('in_channels', [])) == widths:
            model[key].in_channels = TINY['embed_dims']
    if model.get('auxiliary_head') is not None:
        aux = model.auxiliary_head
        assert aux.in_channels == widths[aux.in_index]
        aux.in_channels = TINY['embed_dims'][aux.in_index]
        aux.channels = 16
    if model.get('decode_head', {}).get('type') == 'UPerHead':
        model.decode_head.channels = 32  # speed only
    return model


@pytest.mark.parametrize('path', _configs('det'))
def test_det_config(path):
    from mmdet.testing import demo_mm_inputs
    cfg, arch = _load_and_check(path, 'mmdet')
    backbone, opt = cfg.model.backbone, cfg.optim_wrapper.optimizer
    # §4.2: 1x schedule, AdamW (1e-4 RetinaNet, 2e-4 Mask R-CNN), wd 1e-4, drop path 0.15,
    # frozen stem BN affine with updating statistics, find_unused_parameters
    retina = 'retinanet' in path
    assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 1e-4 if retina else 2e-4, 1e-4)
    assert backbone.drop_path_rate == 0.15 and not backbone.norm_eval
    assert backbone.stem_norm_cfg == dict(type='BN', requires_grad=False)
    assert cfg.train_cfg.max_epochs == 12 and cfg.find_unused_parameters
    assert cfg.param_scheduler[0].end == 500 and cfg.param_scheduler[1].milestones == [8, 11]
    assert list(cfg.model.neck.in_channels) == WIDTHS[arch]
    if retina:
        assert cfg.model.neck.start_level == 1 and cfg.model.neck.add_extra_convs == 'on_input'

    model = _build(_tiny(cfg.model, arch), 'mmdet')
    model.init_weights()
    model.train()
    num_classes = (model.roi_head.bbox_head.num_classes
                   if hasattr(model, 'roi_head') else model.bbox_head.num_classes)
    torch.manual_seed(0)
    data = demo_mm_inputs(2, image_shapes=[(3, 128, 160), (3, 96, 128)],
                          num_classes=num_classes, with_mask=not retina)
    loss, log_vars = model.parse_losses(model(**model.data_preprocessor(data, True),
                                              mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    assert model.backbone.block1[0].attn.kv_proxy.weight.grad is not None
    assert retina or 'loss_mask' in log_vars
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            demo_mm_inputs(1, image_shapes=[(3, 112, 150)], num_classes=num_classes), False)
        results = model(**data, mode='predict')
    assert len(results) == 1 and 'pred_instances' in results[0]


@pytest.mark.parametrize('path', _configs('seg'))
def test_seg_config(path):
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    cfg, arch = _load_and_check(path, 'mmseg')
    assert cfg.model.get('pretrained') is None and cfg.sync_bn == 'torch'
    backbone, opt = cfg.model.backbone, cfg.optim_wrapper.optimizer
    if 'upernet' in path:  # §4.3
        assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 6e-5, 0.01)
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys == dict(norm=dict(decay_mult=0.))
        assert backbone.drop_path_rate == (0.3 if arch == 'base' else 0.15)
        assert cfg.train_cfg.max_iters == 160000 and cfg.train_dataloader.batch_size == 2
        assert cfg.param_scheduler[0].end == 1500 and cfg.param_scheduler[1].power == 1.0
        aux = cfg.model.auxiliary_head
        assert (aux.in_channels, aux.in_index, aux.channels) == (320, 2, 256)
        assert aux.loss_decode.loss_weight == 0.4 and cfg.model.decode_head.channels == 512
        assert backbone.test_tile_size == 768  # §2.8 official test-time tiling
    else:
        assert backbone.test_tile_size is None

    model_cfg = _tiny(cfg.model, arch)
    model_cfg.backbone.test_tile_size = 64  # the tiled eval path on the 96x112 test input
    model_cfg.data_preprocessor.size = (96, 112)  # the test input, instead of 512x512
    model = revert_sync_batchnorm(_build(model_cfg, 'mmseg'))
    model.init_weights()
    model.train()
    h, w = 96, 112
    torch.manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):  # the PPM's BatchNorm on 1x1 maps needs 2 images
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, h, w)))
        samples.append(sample)
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    assert model.backbone.semantic_init.query.grad is not None
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=inputs[:1], data_samples=samples[:1]), False)
        results = model(**data, mode='predict')
    assert results[0].pred_sem_seg.data.shape[-2:] == (h, w)
