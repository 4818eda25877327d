"""Every configs/{det,seg}/groupmixformer*.py loads, states its origin, builds, steps, predicts.

No official detection / segmentation settings exist (specs/groupmixformer.md §4.1), so each
header must say these are mmattn's settings. Each config builds once at full size (GroupMixFormer-S,
no checkpoint read: the Pretrained init runs only when training starts), then with a tiny arch
for one loss + backward and one prediction on demo inputs whose sides are not multiples of 32.
"""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import REPO_ROOT

TINY_ARCH = dict(embed_dims=[20, 40, 60, 80], depths=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2])
S_WIDTHS = [80, 160, 320, 320]


def _configs(folder):
    return sorted(osp.relpath(p, REPO_ROOT) for p in
                  glob.glob(osp.join(REPO_ROOT, 'configs', folder, 'groupmixformer*.py')))


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(min(2, old))
    yield
    torch.set_num_threads(old)


def test_config_inventory():
    assert [osp.basename(c) for c in _configs('det')] == [
        'groupmixformer_maskrcnn.py', 'groupmixformer_retinanet.py']
    assert [osp.basename(c) for c in _configs('seg')] == [
        'groupmixformer_fpn.py', 'groupmixformer_upernet.py']


def _load(path, scope):
    cfg = Config.fromfile(osp.join(REPO_ROOT, path))
    assert cfg.default_scope == scope
    assert cfg.custom_imports == dict(imports=['mmattn'], allow_failed_imports=False)
    with open(osp.join(REPO_ROOT, path)) as f:
        header = f.read().split('_base_')[0]
    assert "mmattn's settings, NOT" in header and 'the authors' in header
    backbone = cfg.model.backbone
    assert backbone.type == 'GroupMixFormer' and backbone.arch == 'small'
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint='checkpoints/groupmixformer_small.pth')
    assert cfg.sync_bn == 'torch'  # SyncBN as the official model when distributed
    return cfg


def _tiny(model_cfg):
    model = copy.deepcopy(model_cfg)
    model.backbone.arch = copy.deepcopy(TINY_ARCH)
    model.backbone.init_cfg = None
    for key in ('neck', 'decode_head'):
        if key in model and list(model[key].get('in_channels', [])) == S_WIDTHS:
            model[key].in_channels = TINY_ARCH['embed_dims']
    aux = model.get('auxiliary_head')
    if aux is not None:
        assert aux.in_channels == S_WIDTHS[aux.in_index]
        aux.in_channels = TINY_ARCH['embed_dims'][aux.in_index]
        aux.channels = 32
    if model.get('decode_head', {}).get('type') == 'UPerHead':
        model.decode_head.channels = 64  # speed only
    return model


def _build(model_cfg, scope):
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    return registry.build(model_cfg)


@pytest.mark.parametrize('path', _configs('det'))
def test_det_config_builds_steps_and_predicts(path):
    from mmdet.testing import demo_mm_inputs
    cfg = _load(path, 'mmdet')
    assert cfg.model.data_preprocessor.pad_size_divisor == 32  # §4.5
    full = _build(copy.deepcopy(cfg.model), 'mmdet')
    assert full.backbone.embed_dims == S_WIDTHS and list(cfg.model.neck.in_channels) == S_WIDTHS
    del full
    opt = cfg.optim_wrapper.optimizer
    if 'maskrcnn' in path:  # §4.5 CoaT recipe
        assert (opt.lr, opt.weight_decay, cfg.train_cfg.max_epochs) == (1e-4, 0.05, 12)
        assert cfg.param_scheduler[1].milestones == [8, 11]
        assert 'RandomChoice' in [t.type for t in cfg.train_dataloader.dataset.pipeline]
    else:  # §4.5 PVT RetinaNet 1x
        assert (opt.lr, opt.weight_decay, cfg.train_cfg.max_epochs) == (1e-4, 1e-4, 12)
    model = _build(_tiny(cfg.model), 'mmdet')
    model.init_weights()
    model.train()
    with_mask = 'maskrcnn' in path
    num_classes = (model.roi_head.bbox_head.num_classes
                   if hasattr(model, 'roi_head') else model.bbox_head.num_classes)
    torch.manual_seed(0)
    data = demo_mm_inputs(2, image_shapes=[(3, 100, 150), (3, 90, 120)],
                          num_classes=num_classes, with_mask=with_mask)
    loss, log_vars = model.parse_losses(model(**model.data_preprocessor(data, True),
                                              mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    assert model.backbone.stages[3].blocks[0].attn.qkv.weight.grad is not None
    assert ('loss_mask' in log_vars) == with_mask
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            demo_mm_inputs(1, image_shapes=[(3, 70, 99)], num_classes=num_classes), False)
        results = model(**data, mode='predict')
    assert len(results) == 1 and 'pred_instances' in results[0]


@pytest.mark.parametrize('path', _configs('seg'))
def test_seg_config_builds_steps_and_predicts(path):
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    cfg = _load(path, 'mmseg')
    assert cfg.model.get('pretrained') is None
    full = _build(copy.deepcopy(cfg.model), 'mmseg')
    assert full.backbone.embed_dims == S_WIDTHS
    del full
    opt = cfg.optim_wrapper.optimizer
    if 'upernet' in path:  # §4.5 Swin protocol
        assert (opt.lr, opt.weight_decay, cfg.train_cfg.max_iters) == (6e-5, 0.01, 160000)
        assert cfg.model.auxiliary_head.in_index == 2
    else:  # §4.5 PVT Semantic FPN protocol
        assert (opt.lr, opt.weight_decay, cfg.train_cfg.max_iters) == (1e-4, 1e-4, 40000)
    assert cfg.train_dataloader.batch_size == 2
    model_cfg = _tiny(cfg.model)
    model_cfg.data_preprocessor.size = (90, 110)  # the test input instead of 512x512
    model = revert_sync_batchnorm(_build(model_cfg, 'mmseg'))
    model.init_weights()
    model.train()
    h, w = 90, 110
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
    assert model.backbone.stages[0].blocks[0].attn.crpe[2].weight.grad is not None
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=inputs[:1], data_samples=samples[:1]), False)
        results = model(**data, mode='predict')
    assert results[0].pred_sem_seg.data.shape[-2:] == (h, w)
