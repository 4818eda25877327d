"""tools/: synthetic data generator, the missing-data check, and train/test CLI guards."""
import filecmp
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from helpers import REPO_ROOT, free_port, load_tool

from mmattn.utils import data_check

make_synthetic = load_tool('make_synthetic')


def _tree(root):
    return sorted(
        osp.relpath(osp.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def test_make_synthetic_deterministic(tmp_path):
    a, b, c = (str(tmp_path / x) for x in 'abc')
    make_synthetic.main(['--out', a, '--num-train', '3', '--num-val', '2', '--seed', '7'])
    make_synthetic.make_synthetic(b, num_train=3, num_val=2, seed=7, verbose=False)
    make_synthetic.make_synthetic(c, num_train=3, num_val=2, seed=8, verbose=False)
    files = _tree(a)
    assert files == _tree(b) == _tree(c)
    assert len(files) == 2 + 5 + 2 * 5  # 2 jsons + 5 jpgs (coco); 5 jpg + 5 png (ade20k)
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors
    _, mismatch, _ = filecmp.cmpfiles(a, c, files, shallow=False)
    assert mismatch  # another seed gives other data
    # a split's images do not depend on the other split's size
    make_synthetic.make_synthetic(str(tmp_path / 'd'), num_train=5, num_val=2, seed=7,
                                  only='coco', verbose=False)
    assert filecmp.cmp(osp.join(a, 'coco', 'val', '000001.jpg'),
                       str(tmp_path / 'd' / 'coco' / 'val' / '000001.jpg'), shallow=False)
    assert not osp.exists(tmp_path / 'd' / 'ade20k')


def test_make_synthetic_coco_is_consistent(synthetic_data):
    import cv2
    from pycocotools import mask as mask_utils
    root = osp.join(synthetic_data, 'coco')
    kinds = set()
    for split in ('train', 'val'):
        with open(osp.join(root, 'annotations', f'instances_{split}.json')) as f:
            coco = json.load(f)
        assert [c['name'] for c in coco['categories']] == list(make_synthetic.COCO_CLASSES)
        images = {im['id']: im for im in coco['images']}
        sizes = set()
        for im in coco['images']:
            img = cv2.imread(osp.join(root, split, im['file_name']))
            assert img.shape[:2] == (im['height'], im['width'])
            sizes.add(img.shape[:2])
        assert len(sizes) > 1  # varied image sizes
        ann_ids = [a['id'] for a in coco['annotations']]
        assert len(set(ann_ids)) == len(ann_ids) and min(ann_ids) >= 1
        for ann in coco['annotations']:
            im = images[ann['image_id']]
            h, w = im['height'], im['width']
            seg = ann['segmentation']
            if isinstance(seg, list):
                kinds.add('polygon')
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            else:
                kinds.add('rle')
                assert seg['size'] == [h, w] and isinstance(seg['counts'], str)
                rle = seg
            mask = mask_utils.decode(rle)
            assert ann['iscrowd'] == 0
            assert ann['area'] == int(mask.sum()) > 0
            ys, xs = np.nonzero(mask)
            x, y, bw, bh = ann['bbox']
            assert (x, y, bw, bh) == (xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                      ys.max() - ys.min() + 1)
            assert 1 <= ann['category_id'] <= len(make_synthetic.COCO_CLASSES)
    assert kinds == {'polygon', 'rle'}


def test_make_synthetic_ade20k_layout(synthetic_data):
    root = osp.join(synthetic_data, 'ade20k')
    for split in ('training', 'validation'):
        imgs = sorted(os.listdir(osp.join(root, 'images', split)))
        anns = sorted(os.listdir(osp.join(root, 'annotations', split)))
        assert [osp.splitext(f)[0] for f in imgs] == [osp.splitext(f)[0] for f in anns]
        assert all(f.endswith('.jpg') for f in imgs) and all(f.endswith('.png') for f in anns)
        for img_name, ann_name in zip(imgs, anns):
            with Image.open(osp.join(root, 'annotations', split, ann_name)) as label:
                assert label.mode == 'L'
                values = np.unique(np.asarray(label))
            with Image.open(osp.join(root, 'images', split, img_name)) as img:
                assert img.size == label.size
            assert values.min() >= 0 and values.max() <= len(make_synthetic.ADE20K_CLASSES)
            assert len(values) >= 3  # unlabelled + several classes


def test_data_check_paths_and_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/det/biformer_maskrcnn.py'))
    paths = data_check.required_data_paths(cfg, ('train', 'val'))
    assert 'data/coco/annotations/instances_train2017.json' in paths
    assert 'data/coco/train2017/' in paths
    missing = data_check.find_missing_data(cfg)
    assert missing == paths
    msg = data_check.missing_data_message(missing)
    assert '\n' not in msg and 'data/coco/annotations/instances_train2017.json' in msg
    assert 'make_synthetic.py' in msg and 'make demo' in msg
    seg = Config.fromfile(osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py'))
    assert data_check.required_data_paths(seg, ('test', )) == [
        'data/synthetic/ade20k/images/validation', 'data/synthetic/ade20k/annotations/validation'
    ]
    # once the files exist nothing is reported
    make_synthetic.make_synthetic('data/synthetic', num_train=1, num_val=1, only='ade20k',
                                  verbose=False)
    assert data_check.find_missing_data(seg, ('train', 'val', 'test')) == []


@pytest.mark.slow
@pytest.mark.parametrize('config', [
    'configs/demo/biformer_maskrcnn_synthetic.py', 'configs/seg/biformer_upernet.py'
])
def test_train_missing_data_one_line(tmp_path, config):
    """tools/train.py in a folder without data: exit code != 0 and one line on stderr."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'), osp.join(REPO_ROOT, config),
         '--work-dir', str(tmp_path / 'wd')],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('mmattn: dataset not found: expected data/')
    assert ('data/synthetic/coco/' in lines[0]) == ('synthetic' in config)
    assert 'python tools/make_synthetic.py' in lines[0] and 'make demo' in lines[0]
    assert not (tmp_path / 'wd').exists()  # failed before the Runner was built


def test_train_refuses_amp_on_cpu(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip('CUDA present: --amp is allowed')
    train = load_tool('train')
    with pytest.raises(SystemExit, match='--amp needs a CUDA GPU'):
        train.main([osp.join(REPO_ROOT, 'configs/demo/biformer_maskrcnn_synthetic.py'), '--amp',
                    '--work-dir', str(tmp_path)])


def test_train_cli_semantics(tmp_path):
    """--resume [PATH] for mmdet, flag-only for mmseg; --auto-scale-lr is mmdet-only."""
    train = load_tool('train')
    det = osp.join(REPO_ROOT, 'configs/demo/biformer_retinanet_synthetic.py')
    seg = osp.join(REPO_ROOT, 'configs/demo/biformer_fpn_synthetic.py')
    cfg, scope = train.build_cfg(train.parse_args([det, '--resume', 'x.pth', '--auto-scale-lr']))
    assert scope == 'mmdet' and cfg.resume and cfg.load_from == 'x.pth'
    assert cfg.auto_scale_lr.enable
    assert cfg.work_dir == osp.join('./work_dirs', 'biformer_retinanet_synthetic')
    cfg, _ = train.build_cfg(train.parse_args([det, '--resume']))
    assert cfg.resume and cfg.load_from is None
    cfg, scope = train.build_cfg(
        train.parse_args([seg, '--resume', '--work-dir', str(tmp_path),
                          '--cfg-options', 'train_cfg.max_iters=3']))
    assert scope == 'mmseg' and cfg.resume and cfg.load_from is None
    assert cfg.work_dir == str(tmp_path) and cfg.train_cfg.max_iters == 3
    with pytest.raises(SystemExit, match='resume from the work dir'):
        train.build_cfg(train.parse_args([seg, '--resume', 'x.pth']))
    with pytest.raises(SystemExit, match='mmdet option'):
        train.build_cfg(train.parse_args([seg, '--auto-scale-lr']))


def test_test_cli_semantics(tmp_path):
    test = load_tool('test')
    det = osp.join(REPO_ROOT, 'configs/demo/biformer_maskrcnn_synthetic.py')
    seg = osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py')
    cfg, scope = test.build_cfg(test.parse_args(
        [det, 'ckpt.pth', '--show-dir', 'vis', '--tta', '--out', 'r.pkl']))
    assert scope == 'mmdet' and cfg.load_from == 'ckpt.pth'
    assert cfg.default_hooks.visualization.draw and \
        cfg.default_hooks.visualization.test_out_dir == 'vis'
    assert cfg.model.type == 'DetTTAModel' and cfg.model.module.type == 'MaskRCNN'
    with pytest.raises(SystemExit, match='.pkl'):
        test.build_cfg(test.parse_args([det, 'ckpt.pth', '--out', 'results']))
    cfg, scope = test.build_cfg(test.parse_args(
        [seg, 'ckpt.pth', '--show-dir', 'vis', '--out', str(tmp_path / 'pred')]))
    assert scope == 'mmseg' and cfg.visualizer.save_dir == 'vis'
    assert cfg.test_evaluator.output_dir == str(tmp_path / 'pred')
    with pytest.raises(SystemExit, match='checkpoint not found'):
        test.main([seg, str(tmp_path / 'missing.pth')])


def test_train_cpu_distributed_fixups():
    """--launcher pytorch without CUDA: gloo, DDP without device_ids, SyncBN -> CPUSyncBN."""
    import torch
    if torch.cuda.is_available():
        pytest.skip('CUDA present')
    train = load_tool('train')
    seg = osp.join(REPO_ROOT, 'configs/seg/biformer_upernet.py')
    cfg, _ = train.build_cfg(train.parse_args([seg]))
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN' and cfg.sync_bn == 'torch'
    assert [h['type'] for h in cfg.custom_hooks] == ['ExactResumeHook',  # no MeanLogVarsHook
                                                     'ExceptionCheckpointHook']
    cfg, _ = train.build_cfg(train.parse_args([seg, '--launcher', 'pytorch']))
    assert cfg.get('sync_bn') is None  # the Runner would convert to torch's CUDA-only SyncBN
    assert cfg.model.decode_head.norm_cfg.type == 'CPUSyncBN'
    assert cfg.model.auxiliary_head.norm_cfg.type == 'CPUSyncBN'
    assert "'SyncBN'" not in str(cfg.model) and "'BN'" not in str(cfg.model)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None  # DDP rejects device_ids on CPU
    assert [h['type'] for h in cfg.custom_hooks] == ['MeanLogVarsHook', 'ExactResumeHook',
                                                     'ExceptionCheckpointHook']


@pytest.mark.slow
def test_dist_train_sh_on_cpu(synthetic_data, tmp_path):
    """tools/dist_train.sh: 2 torchrun processes on CPU (gloo), 1 epoch + CocoMetric."""
    import torch
    if torch.cuda.is_available():
        pytest.skip('CPU-only path')
    port = free_port()
    coco = osp.join(synthetic_data, 'coco')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable, PORT=str(port))
    proc = subprocess.run(
        ['bash', osp.join(REPO_ROOT, 'tools', 'dist_train.sh'),
         osp.join(REPO_ROOT, 'configs/demo/biformer_retinanet_synthetic.py'), '2',
         '--work-dir', str(tmp_path), '--cfg-options',
         f'train_dataloader.dataset.data_root={coco}', f'val_dataloader.dataset.data_root={coco}',
         f'val_evaluator.ann_file={coco}/annotations/instances_val.json',
         'train_cfg.max_epochs=1', 'train_dataloader.batch_size=1',
         'train_dataloader.batch_sampler=None', 'model.test_cfg.score_thr=0.0'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr
    assert (tmp_path / 'epoch_1.pth').is_file()


RUN_AND_CLOSE_SCRIPT = """
import atexit, logging, sys
import torch.distributed as dist
from mmattn.utils.tool_cli import run_and_close
store, out, fail = sys.argv[1:]
log = logging.getLogger('run_and_close')
log.addHandler(logging.FileHandler(out + '.log'))
log.setLevel(logging.INFO)

def report():
    with open(out + '.atexit', 'w') as f:
        f.write(f'initialized={dist.is_initialized()}')

def main(argv):
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=0, world_size=1)
    atexit.register(report)
    log.info('main done')
    if fail == '1':
        raise SystemExit('tools/train.py: a one-line error')

run_and_close(main, [])
print('after run_and_close')
"""


@pytest.mark.slow
@pytest.mark.parametrize('fail', [False, True])
def test_run_and_close_ends_a_distributed_worker(tmp_path, fail):
    """A torchrun worker of tools/train.py / test.py: the process group is destroyed, exit
    handlers run with the interpreter whole (log file flushed), and a successful run ends with
    exit 0 without interpreter teardown; a failing one keeps its message and exit status."""
    out = str(tmp_path / 'out')
    proc = subprocess.run(
        [sys.executable, '-c', RUN_AND_CLOSE_SCRIPT, str(tmp_path / 'store'), out, str(int(fail))],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == (1 if fail else 0), proc.stderr[-2000:]
    with open(out + '.atexit') as f:
        assert f.read() == 'initialized=False'
    with open(out + '.log') as f:
        assert f.read() == 'main done\n'
    if fail:
        assert 'tools/train.py: a one-line error' in proc.stderr
    else:  # os._exit(0): nothing after run_and_close runs
        assert 'after run_and_close' not in proc.stdout


def test_missing_pretrained_checkpoint_is_named(tmp_path):
    from mmengine.config import Config

    from mmattn.utils import missing_pretrained
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/det/biformer_maskrcnn.py'))
    assert missing_pretrained(cfg) == ['checkpoints/biformer_small_converted.pth']
    cfg.model.backbone.init_cfg = None
    assert missing_pretrained(cfg) == []
