"""NAT / DiNAT through the stock OpenMMLab stack.

* Every configs/{det,seg}/{nat,dinat}_*.py loads, carries the official settings it claims, builds at
  full size and runs one loss step + one prediction (no checkpoint: init_cfg dropped).
* Mask R-CNN (NAT) and UPerNet (DiNAT) train 2 iterations through the real Runner
  (tools/train.py, in process) on the synthetic data of conftest.py and validate with
  CocoMetric / IoUMetric. The demo BiFormer configs provide data, heads and schedule; a config
  written to tmp_path swaps in a tiny NAT / DiNAT. Both runs hit the small-map padding path.
"""
import copy
import math
import os.path as osp

import pytest
import torch

from helpers import (REPO_ROOT, ade_runner_options, build_model, coco_runner_options,
                      config_header, config_paths, det_loss_step, load_config, load_tool,
                      seg_loss_step, val_metrics)

train_tool = load_tool('train')

DEMO_ARCH = dict(embed_dims=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], mlp_ratio=2.)
TINY_WIDTHS = [64, 128, 256, 512]  # NAT-T / DiNAT-T


def _nat_configs(folder):
    return config_paths(('nat_', 'dinat_'), folder)


# ------------------------------------------------------------------------------- configs


def test_config_inventory():
    assert [osp.basename(c) for c in _nat_configs('det')] == [
        'dinat_maskrcnn.py', 'dinat_retinanet.py', 'nat_maskrcnn.py', 'nat_retinanet.py']
    assert [osp.basename(c) for c in _nat_configs('seg')] == [
        'dinat_fpn.py', 'dinat_upernet.py', 'nat_fpn.py', 'nat_upernet.py']


def _check_backbone(cfg, path, task):
    name = osp.basename(path)
    backbone = cfg.model.backbone
    assert backbone.arch == 'tiny' and tuple(backbone.out_indices) == (0, 1, 2, 3)
    if name.startswith('dinat_'):
        # DiNAT: per-task dilation schedules, ImageNet DiNAT-T weights
        assert backbone.type == 'DiNAT'
        assert backbone.dilations == ('coco' if task == 'det' else 'ade20k')
        assert backbone.init_cfg.checkpoint == 'checkpoints/dinat_tiny_in1k_224.pth'
    else:
        assert backbone.type == 'NAT' and backbone.dilations is None
        assert backbone.init_cfg.checkpoint == 'checkpoints/nat_tiny.pth'
    header = config_header(path)
    in_paper = 'maskrcnn' in name or 'upernet' in name
    assert ('NOT a paper setting' in header) != in_paper
    if in_paper:  # the official COCO Mask R-CNN / ADE20K UPerNet settings
        custom_keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
        assert set(custom_keys) == {'rpb', 'norm'}
        assert all(v == dict(decay_mult=0.) for v in custom_keys.values())
        opt = cfg.optim_wrapper.optimizer
        if task == 'det':
            assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 1e-4, 0.05)
            assert cfg.train_cfg.max_epochs == 36 and backbone.drop_path_rate == 0.2
            assert cfg.param_scheduler[0].end == 500
            assert cfg.param_scheduler[1].milestones == [27, 33]
            steps = [t.type for t in cfg.train_dataloader.dataset.pipeline]
            assert 'RandomChoice' in steps  # DETR-style multi-scale AutoAugment
        else:
            assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 6e-5, 0.01)
            assert cfg.train_cfg.max_iters == 160000 and backbone.drop_path_rate == 0.3
            assert cfg.train_dataloader.batch_size == 2
            assert cfg.model.auxiliary_head.in_channels == 256
            assert cfg.model.auxiliary_head.in_index == 2


@pytest.mark.parametrize('path', _nat_configs('det'))
def test_det_config_builds_and_steps(path):
    cfg = load_config(path, 'mmdet')
    _check_backbone(cfg, path, 'det')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None  # no checkpoint here
    model = build_model(model_cfg, 'mmdet')
    assert model.backbone.embed_dims == TINY_WIDTHS
    assert list(cfg.model.neck.in_channels) == TINY_WIDTHS
    if 'maskrcnn' in path:  # paper: Mask R-CNN NAT-T / DiNAT-T 48M params
        assert round(sum(p.numel() for p in model.parameters()) / 1e6) == 48
    # 96x128: DiNAT 'coco' pads every level smaller than 7*dilation, NAT pads levels 2-3
    det_loss_step(model, 'maskrcnn' in path, image_shapes=[(3, 96, 128)])
    assert model.backbone.levels[3].blocks[4].attn.rpb.grad is not None


@pytest.mark.parametrize('path', _nat_configs('seg'))
def test_seg_config_builds_and_steps(path):
    from mmengine.model.utils import revert_sync_batchnorm
    cfg = load_config(path, 'mmseg')
    assert cfg.model.get('pretrained') is None
    _check_backbone(cfg, path, 'seg')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    model_cfg.data_preprocessor.size = (96, 112)  # the test input, instead of 512x512
    model = revert_sync_batchnorm(build_model(model_cfg, 'mmseg'))
    assert model.backbone.embed_dims == TINY_WIDTHS
    if 'upernet' in path:  # paper: UPerNet NAT-T / DiNAT-T 58M params
        assert round(sum(p.numel() for p in model.parameters()) / 1e6) == 58
    seg_loss_step(model, 96, 112)
    assert model.backbone.levels[0].blocks[1].attn.rpb.grad is not None


# ---------------------------------------------------------------------- Runner end to end


@pytest.fixture
def padding_log(monkeypatch):
    """Records (map H, map W, kernel*dilation) of every NAT block attention call."""
    from mmattn.models.backbones.nat import NATBlock
    calls = []
    original = NATBlock.attention

    def attention(self, x):
        calls.append((x.shape[1], x.shape[2], self.kernel_size * self.dilation))
        return original(self, x)

    monkeypatch.setattr(NATBlock, 'attention', attention)
    return calls


def _write_config(tmp_path, demo, backbone):
    path = tmp_path / 'nat_demo.py'
    base = osp.join(REPO_ROOT, 'configs', 'demo', demo)
    path.write_text(f'_base_ = [{base!r}]\n'
                    f'model = dict(backbone=dict(_delete_=True, **{backbone!r}))\n')
    return str(path)


@pytest.mark.slow
def test_nat_maskrcnn_train_val(synthetic_data, tmp_path, padding_log):
    from mmattn.models import NAT
    backbone = dict(type='NAT', arch=DEMO_ARCH, out_indices=(0, 1, 2, 3), init_cfg=None)
    config = _write_config(tmp_path, 'biformer_maskrcnn_synthetic.py', backbone)
    runner = train_tool.main([
        config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        *coco_runner_options(synthetic_data, 'model.test_cfg.rcnn.score_thr')])
    assert runner.iter == 2 and type(runner.model.backbone) is NAT
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    metrics = val_metrics(runner)
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert key in metrics, metrics
    # synthetic images are <= 192x160: level 3 (<= 6x5) is below K=7 -> padded
    assert any(h < need or w < need for h, w, need in padding_log)
    # the saved detector checkpoint initialises a NAT through init_cfg (prefix 'backbone.')
    ckpt = tmp_path / 'work' / 'epoch_1.pth'
    fresh = NAT(arch=DEMO_ARCH,
                init_cfg=dict(type='Pretrained', checkpoint=str(ckpt), prefix='backbone.'))
    fresh.init_weights()
    trained = runner.model.backbone.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())


@pytest.mark.slow
def test_dinat_upernet_train_val(synthetic_data, tmp_path, padding_log):
    from mmattn.models import DiNAT
    # 128x128 crops -> level maps 32/16/8/4; d=8 at level 0 needs 56: the padding path
    backbone = dict(type='DiNAT', arch=DEMO_ARCH, dilations=[[8], [2], [1, 2], [1]],
                    out_indices=(0, 1, 2, 3), init_cfg=None)
    config = _write_config(tmp_path, 'biformer_upernet_synthetic.py', backbone)
    runner = train_tool.main([config, '--work-dir', str(tmp_path), '--cfg-options',
                              *ade_runner_options(synthetic_data)])
    assert runner.iter == 2 and type(runner.model.backbone) is DiNAT
    assert runner.model.backbone.dilations == [[8], [2], [1, 2], [1]]
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    metrics = val_metrics(runner)
    assert all(k in metrics for k in ('aAcc', 'mIoU', 'mAcc')), metrics
    assert (32, 32, 56) in padding_log  # level 0 of a 128x128 crop, d=8
    assert (tmp_path / 'iter_2.pth').is_file()
