"""Slide-PVT + Semantic FPN through the real Runner (tools/train.py, in process): 2 iterations on
the synthetic ADE20K of conftest.py, validation with IoUMetric, then tools/reparameterize.py on the
saved checkpoint and a reload of the deploy checkpoint with the config it writes."""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from helpers import REPO_ROOT, ade_runner_options, load_tool

train_tool = load_tool('train')
reparameterize_tool = load_tool('reparameterize')


@pytest.mark.slow
def test_slide_pvt_fpn_train_val_reparameterize(synthetic_data, tmp_path):
    from mmattn.models import SlidePVT
    config = tmp_path / 'slide_fpn_demo.py'
    base = osp.join(REPO_ROOT, 'configs', 'demo', 'biformer_fpn_synthetic.py')
    backbone = dict(type='SlidePVT', arch='tiny', out_indices=(0, 1, 2, 3), init_cfg=None)
    config.write_text(f'_base_ = [{base!r}]\n'
                      f'model = dict(backbone=dict(_delete_=True, **{backbone!r}),\n'
                      '             neck=dict(in_channels=[64, 128, 320, 512]))\n')
    runner = train_tool.main([str(config), '--work-dir', str(tmp_path / 'work'),
                              '--cfg-options', *ade_runner_options(synthetic_data)])
    assert runner.iter == 2 and type(runner.model.backbone) is SlidePVT
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    metrics = {k for k in runner.message_hub.log_scalars if k.startswith('val/')}
    assert {'val/aAcc', 'val/mIoU', 'val/mAcc'} <= metrics, metrics
    attn = runner.model.backbone.layers[0][1][1].attn
    assert attn.shift_kernel_is_one_hot()  # two training steps: the frozen kernel stayed
    ckpt = tmp_path / 'work' / 'iter_2.pth'
    assert ckpt.is_file()

    out = tmp_path / 'deploy' / 'slide_fpn_deploy.pth'
    out_ckpt, out_config = reparameterize_tool.main([
        str(config), str(ckpt), str(out), '--input-size', '64', '96'])
    deploy_cfg = Config.fromfile(out_config)
    assert deploy_cfg.model.backbone.deploy is True
    deployed = reparameterize_tool.build_model(deploy_cfg, 'mmseg').eval()
    saved = torch.load(out_ckpt, map_location='cpu', weights_only=True)
    assert not any('dep_conv1' in k for k in saved['state_dict'])
    deployed.load_state_dict(saved['state_dict'], strict=True)
    trained = runner.model.eval()
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        for a, b in zip(trained.extract_feat(x), deployed.extract_feat(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
