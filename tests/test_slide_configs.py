"""Every configs/{det,seg}/slide*.py loads, carries its spec settings, builds at full size (init_cfg
dropped: no checkpoint here), matches the paper's parameter count where the paper gives one, and
runs one loss step + backward through the stock mmdet / mmseg model."""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import REPO_ROOT

# paper params in millions (specs/slide.md §4.3 / §4.4)
PAPER_PARAMS = {'slide_maskrcnn.py': 42, 'slide-swin_maskrcnn.py': 48, 'slide_upernet.py': 60,
                'slide_fpn.py': 26}
BACKBONES = {'slide_maskrcnn.py': 'SlidePVT', 'slide_retinanet.py': 'SlidePVT',
             'slide_fpn.py': 'SlidePVT', 'slide-swin_maskrcnn.py': 'SlideSwin',
             'slide_upernet.py': 'SlideSwin'}


def _configs(folder):
    return sorted(osp.relpath(p, REPO_ROOT)
                  for p in glob.glob(osp.join(REPO_ROOT, 'configs', folder, 'slide*.py')))


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(min(2, old))
    yield
    torch.set_num_threads(old)


def test_config_inventory():
    assert sorted(osp.basename(p) for p in _configs('det') + _configs('seg')) == sorted(BACKBONES)


def _load(path, scope):
    cfg = Config.fromfile(osp.join(REPO_ROOT, path))
    assert cfg.default_scope == scope
    assert cfg.custom_imports == dict(imports=['mmattn'], allow_failed_imports=False)
    name = osp.basename(path)
    backbone = cfg.model.backbone
    assert backbone.type == BACKBONES[name]
    assert backbone.init_cfg.type == 'Pretrained'
    if backbone.type == 'SlideSwin':  # §2.4: the paper's window-7 stages 3-4 downstream
        assert backbone.attn_mode == 'window' and backbone.window_size == 7
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys['relative_position_bias_table'] == \
            dict(decay_mult=0.)
    else:
        assert backbone.arch == 'small'
    with open(osp.join(REPO_ROOT, path)) as f:
        header = f.read().split('_base_')[0]
    assert ('NOT a paper setting' in header) == (name not in PAPER_PARAMS)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    model = MODELS.build(model_cfg)
    if name in PAPER_PARAMS:
        assert round(sum(p.numel() for p in model.parameters()) / 1e6) == PAPER_PARAMS[name]
    model.init_weights()
    return cfg, model


@pytest.mark.parametrize('path', _configs('det'))
def test_det_config_builds_and_steps(path):
    from mmdet.testing import demo_mm_inputs
    _, model = _load(path, 'mmdet')
    model.train()
    head = model.roi_head.bbox_head if hasattr(model, 'roi_head') else model.bbox_head
    torch.manual_seed(0)
    data = demo_mm_inputs(1, image_shapes=[(3, 72, 100)], num_classes=head.num_classes,
                          with_mask='maskrcnn' in path)
    loss, _ = model.parse_losses(model(**model.data_preprocessor(data, True), mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    attn = [m for m in model.backbone.modules() if type(m).__name__ == 'TokenSlideAttention']
    assert attn and attn[0].dep_conv1.weight.grad is not None
    assert attn[0].shift_kernel_is_one_hot()  # the detector's init_weights kept it


@pytest.mark.parametrize('path', _configs('seg'))
def test_seg_config_builds_and_steps(path):
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    cfg, model = _load(path, 'mmseg')
    assert cfg.model.get('pretrained') is None
    model = revert_sync_batchnorm(model)
    model.data_preprocessor.size = (64, 96)
    model.train()
    h, w = 64, 96
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
    attn = [m for m in model.backbone.modules() if type(m).__name__ == 'TokenSlideAttention']
    assert attn and attn[-1].relative_position_bias_table.grad is not None
