"""End to end through the real mmengine Runner (tools/train.py, tools/test.py, in process).

RetinaNet, Mask R-CNN, UPerNet and Semantic FPN demo configs each train 2 iterations on the tiny
synthetic data and validate with the stock CocoMetric / IoUMetric; RetinaNet then resumes from
its saved checkpoint and continues; Mask R-CNN's checkpoint is tested with tools/test.py.
"""
import glob
import os.path as osp

import pytest
import torch

from helpers import REPO_ROOT, ade_runner_options, coco_runner_options, load_tool, val_metrics

train_tool = load_tool('train')
test_tool = load_tool('test')

DET_KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50')
SEGM_KEYS = ('coco/segm_mAP', 'coco/segm_mAP_50')
SEG_KEYS = ('aAcc', 'mIoU', 'mAcc')


def _det_options(data_root, score_thr_key):
    return coco_runner_options(data_root, score_thr_key) + ['default_hooks.logger.interval=1']


def _seg_options(data_root):
    return ade_runner_options(data_root) + ['default_hooks.logger.interval=1']


def _train(config, work_dir, options, *extra):
    return train_tool.main([
        osp.join(REPO_ROOT, config), '--work-dir', str(work_dir), *extra, '--cfg-options',
        *options
    ])


@pytest.mark.slow
def test_retinanet_train_val_resume(synthetic_data, tmp_path):
    config = 'configs/demo/biformer_retinanet_synthetic.py'
    options = _det_options(synthetic_data, 'model.test_cfg.score_thr')
    runner = _train(config, tmp_path, options)
    assert runner.iter == 2 and runner.epoch == 1
    metrics = val_metrics(runner)
    assert all(k in metrics for k in DET_KEYS), metrics
    assert not any(k.startswith('coco/segm') for k in metrics)
    ckpt = tmp_path / 'epoch_1.pth'
    assert ckpt.is_file()
    saved = torch.load(ckpt, map_location='cpu', weights_only=True)  # allow-list (mmattn.compat)
    assert saved['meta']['iter'] == 2

    # resume round trip: continue from epoch_1.pth (found via last_checkpoint) to epoch 2
    resumed = _train(config, tmp_path, options[:-3] + [
        'train_cfg.max_epochs=2', 'param_scheduler.1.end=2', 'model.test_cfg.score_thr=0.0'
    ], '--resume')
    assert resumed.epoch == 2 and resumed.iter == 4  # 2 loaded + 2 new iterations
    assert (tmp_path / 'epoch_2.pth').is_file()
    log = sorted(glob.glob(str(tmp_path / '*' / '*.log')))[-1]
    with open(log) as f:
        text = f.read()
    assert 'resumed epoch: 1, iter: 2' in text and 'epoch_1.pth' in text
    assert all(k in val_metrics(resumed) for k in DET_KEYS)


@pytest.mark.slow
def test_maskrcnn_train_val_test(synthetic_data, tmp_path):
    config = 'configs/demo/biformer_maskrcnn_synthetic.py'
    options = _det_options(synthetic_data, 'model.test_cfg.rcnn.score_thr')
    runner = _train(config, tmp_path / 'train', options)
    assert runner.iter == 2
    metrics = val_metrics(runner)
    assert all(k in metrics for k in DET_KEYS + SEGM_KEYS), metrics
    # tools/test.py on the saved checkpoint (weights_only load through the allow-list)
    ckpt = str(tmp_path / 'train' / 'epoch_1.pth')
    results = test_tool.main([
        osp.join(REPO_ROOT, config), ckpt, '--work-dir', str(tmp_path / 'test'),
        '--out', str(tmp_path / 'preds.pkl'), '--cfg-options', *options
    ])
    assert all(k in results for k in DET_KEYS + SEGM_KEYS), results
    assert osp.isfile(tmp_path / 'preds.pkl')


@pytest.mark.slow
@pytest.mark.parametrize('config', [
    'configs/demo/biformer_upernet_synthetic.py', 'configs/demo/biformer_fpn_synthetic.py'
])
def test_seg_train_val(synthetic_data, tmp_path, config):
    runner = _train(config, tmp_path, _seg_options(synthetic_data))
    assert runner.iter == 2
    metrics = val_metrics(runner)
    assert all(k in metrics for k in SEG_KEYS), metrics
    assert (tmp_path / 'iter_2.pth').is_file()
