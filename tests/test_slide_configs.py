"""Every configs/{det,seg}/slide*.py loads, carries its paper settings, builds at full size
(init_cfg dropped: no checkpoint here), matches the paper's parameter count where the paper gives
one, and runs one loss step + backward through the stock mmdet / mmseg model."""
import copy
import os.path as osp

import pytest

from helpers import (build_model, config_header, config_paths, det_loss_step, load_config,
                      seg_loss_step)

# paper params in millions (the paper's COCO and ADE20K result figures)
PAPER_PARAMS = {'slide_maskrcnn.py': 42, 'slide-swin_maskrcnn.py': 48, 'slide_upernet.py': 60,
                'slide_fpn.py': 26}
BACKBONES = {'slide_maskrcnn.py': 'SlidePVT', 'slide_retinanet.py': 'SlidePVT',
             'slide_fpn.py': 'SlidePVT', 'slide-swin_maskrcnn.py': 'SlideSwin',
             'slide_upernet.py': 'SlideSwin'}


def _configs(folder):
    return config_paths('slide', folder)


def test_config_inventory():
    assert sorted(osp.basename(p) for p in _configs('det') + _configs('seg')) == sorted(BACKBONES)


def _load(path, scope):
    cfg = load_config(path, scope)
    name = osp.basename(path)
    backbone = cfg.model.backbone
    assert backbone.type == BACKBONES[name]
    assert backbone.init_cfg.type == 'Pretrained'
    if backbone.type == 'SlideSwin':  # the paper's FLOPs imply Swin's window 7 in stages 3-4
        assert backbone.attn_mode == 'window' and backbone.window_size == 7
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys['relative_position_bias_table'] == \
            dict(decay_mult=0.)
    else:
        assert backbone.arch == 'small'
    assert ('NOT a paper setting' in config_header(path)) == (name not in PAPER_PARAMS)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    model = build_model(model_cfg, scope)
    if name in PAPER_PARAMS:
        assert round(sum(p.numel() for p in model.parameters()) / 1e6) == PAPER_PARAMS[name]
    model.init_weights()
    return cfg, model


@pytest.mark.parametrize('path', _configs('det'))
def test_det_config_builds_and_steps(path):
    _, model = _load(path, 'mmdet')
    det_loss_step(model, 'maskrcnn' in path, image_shapes=[(3, 72, 100)])
    attn = [m for m in model.backbone.modules() if type(m).__name__ == 'TokenSlideAttention']
    assert attn and attn[0].dep_conv1.weight.grad is not None
    assert attn[0].shift_kernel_is_one_hot()  # the detector's init_weights kept it


@pytest.mark.parametrize('path', _configs('seg'))
def test_seg_config_builds_and_steps(path):
    from mmengine.model.utils import revert_sync_batchnorm
    cfg, model = _load(path, 'mmseg')
    assert cfg.model.get('pretrained') is None
    model = revert_sync_batchnorm(model)
    model.data_preprocessor.size = (64, 96)
    seg_loss_step(model, 64, 96)
    attn = [m for m in model.backbone.modules() if type(m).__name__ == 'TokenSlideAttention']
    assert attn and attn[-1].relative_position_bias_table.grad is not None
