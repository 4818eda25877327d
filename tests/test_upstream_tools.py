"""mmattn through the *upstream* entry points: the tools/train.py and tools/test.py shipped inside
the mmdet and mmseg packages (their ``.mim/tools``), with configs that only inherit stock bases and
add ``custom_imports=['mmattn']``. Nothing of mmattn's own tools is involved."""
import glob
import os.path as osp
import sys

import pytest
from helpers import REPO_ROOT, run_tool


def _upstream_tool(package, name):
    module = __import__(package)
    path = osp.join(osp.dirname(module.__file__), '.mim', 'tools', f'{name}.py')
    if not osp.isfile(path):
        pytest.skip(f'{package} was installed without its .mim/tools')
    return path


@pytest.mark.slow
def test_mmdet_upstream_train_and_test(synthetic_data, tmp_path):
    coco = osp.join(synthetic_data, 'coco')
    config = osp.join(REPO_ROOT, 'configs/demo/biformer_retinanet_synthetic.py')
    data = [f'{split}_dataloader.dataset.data_root={coco}' for split in ('train', 'val', 'test')]
    data += [f'{split}_evaluator.ann_file={coco}/annotations/instances_val.json'
             for split in ('val', 'test')]
    log = run_tool([sys.executable, _upstream_tool('mmdet', 'train'), config,
                    '--work-dir', str(tmp_path), '--cfg-options', 'train_cfg.max_epochs=1',
                    'model.test_cfg.score_thr=0.0', *data], cwd=tmp_path)
    assert 'coco/bbox_mAP' in log
    log = run_tool([sys.executable, _upstream_tool('mmdet', 'test'), config,
                    str(tmp_path / 'epoch_1.pth'), '--work-dir', str(tmp_path / 'test'),
                    '--cfg-options', 'model.test_cfg.score_thr=0.0', *data], cwd=tmp_path)
    assert 'coco/bbox_mAP' in log and 'Missing key' not in log and 'unexpected key' not in log


@pytest.mark.slow
def test_mmseg_upstream_train(synthetic_data, tmp_path):
    ade = osp.join(synthetic_data, 'ade20k')
    config = osp.join(REPO_ROOT, 'configs/demo/biformer_fpn_synthetic.py')
    log = run_tool([sys.executable, _upstream_tool('mmseg', 'train'), config,
                    '--work-dir', str(tmp_path), '--cfg-options', 'train_cfg.max_iters=2',
                    'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
                    f'train_dataloader.dataset.data_root={ade}',
                    f'val_dataloader.dataset.data_root={ade}'], cwd=tmp_path)
    assert 'mIoU' in log
    assert glob.glob(str(tmp_path / 'iter_2.pth'))
