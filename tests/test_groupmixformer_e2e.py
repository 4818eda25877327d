"""GroupMixFormer + RetinaNet through the real Runner: 2 train iterations + COCO validation.

tools/train.py runs in process on the synthetic COCO data of conftest.py; the demo BiFormer
RetinaNet config provides data, head and schedule, and a config written to tmp_path swaps in a
tiny GroupMixFormer. The data preprocessor pads to 32 (the official model needs sides divisible
by 32), so the backbone sees the sizes the official model accepts; the saved detector checkpoint
must initialise a fresh backbone through ``init_cfg`` (prefix ``backbone.``).
"""
import math
import os.path as osp

import pytest
import torch

from helpers import REPO_ROOT, coco_runner_options, load_tool

train_tool = load_tool('train')

DEMO_ARCH = dict(embed_dims=[20, 40, 80, 160], depths=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2])


@pytest.mark.slow
def test_groupmixformer_retinanet_train_val(synthetic_data, tmp_path, monkeypatch):
    from mmattn.models import GroupMixFormer
    sizes = []
    forward = GroupMixFormer.forward
    monkeypatch.setattr(GroupMixFormer, 'forward',
                        lambda self, x: sizes.append(tuple(x.shape[2:])) or forward(self, x))
    backbone = dict(type='GroupMixFormer', arch=DEMO_ARCH, out_indices=(0, 1, 2, 3),
                    init_cfg=None)
    config = tmp_path / 'groupmixformer_demo.py'
    base = osp.join(REPO_ROOT, 'configs', 'demo', 'biformer_retinanet_synthetic.py')
    config.write_text(f'_base_ = [{base!r}]\n'
                      f'model = dict(backbone=dict(_delete_=True, **{backbone!r}),\n'
                      f'             neck=dict(in_channels={DEMO_ARCH["embed_dims"]!r}))\n')
    work = tmp_path / 'work'
    runner = train_tool.main([
        str(config), '--work-dir', str(work), '--cfg-options',
        *coco_runner_options(synthetic_data, 'model.test_cfg.score_thr')])
    assert runner.iter == 2 and type(runner.model.backbone) is GroupMixFormer
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    metrics = {k for k in runner.message_hub.log_scalars if k.startswith('val/')}
    assert {'val/coco/bbox_mAP', 'val/coco/bbox_mAP_50'} <= metrics, metrics
    assert sizes and all(h % 32 == 0 and w % 32 == 0 for h, w in sizes)  # pad_size_divisor
    # the aggregator BNs trained (running statistics moved away from their init)
    bn = runner.model.backbone.stages[2].blocks[0].attn.aggregators[3].norm
    assert bn.num_batches_tracked.item() == 2 and not torch.equal(bn.running_var,
                                                                  torch.ones_like(bn.running_var))
    ckpt = work / 'epoch_1.pth'
    fresh = GroupMixFormer(DEMO_ARCH, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt),
                                                    prefix='backbone.'))
    fresh.init_weights()
    trained = runner.model.backbone.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())
