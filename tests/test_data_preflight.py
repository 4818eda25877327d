"""Data checked before the first iteration: tools/train.py and tools/test.py stop with one line
(the count and the first offending entries) for missing image or segmentation files, an empty
annotations list, class names matching no category, boxes that are all degenerate, and
segmentation maps with label values the loss cannot take, more than one channel or another size
than their image; ``--skip-data-check`` bypasses the check."""
import json
import os
import os.path as osp
import shutil

import pytest
from helpers import REPO_ROOT, load_tool

train_tool, test_tool = load_tool('train'), load_tool('test')
DET = osp.join(REPO_ROOT, 'configs/demo/biformer_retinanet_synthetic.py')
SEG = osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py')


@pytest.fixture
def data(synthetic_data, tmp_path):
    """A private copy of the synthetic COCO + ADE20K sets (the tests damage it)."""
    root = tmp_path / 'data'
    shutil.copytree(synthetic_data, root)
    return root


def _det_args(root, work):
    coco = f'{root}/coco/'
    return ['--work-dir', str(work), '--cfg-options', f'train_dataloader.dataset.data_root={coco}',
            f'val_dataloader.dataset.data_root={coco}', f'test_dataloader.dataset.data_root={coco}',
            f'val_evaluator.ann_file={coco}annotations/instances_val.json',
            f'test_evaluator.ann_file={coco}annotations/instances_val.json',
            'train_cfg.max_epochs=1']


def _seg_args(root, work):
    ade = f'{root}/ade20k'
    return ['--work-dir', str(work), '--cfg-options', f'train_dataloader.dataset.data_root={ade}',
            f'val_dataloader.dataset.data_root={ade}', f'test_dataloader.dataset.data_root={ade}',
            'train_cfg.max_iters=2']


def _edit_json(path, edit):
    with open(path) as f:
        coco = json.load(f)
    edit(coco)
    with open(path, 'w') as f:
        json.dump(coco, f)
    return coco


def _refused(main, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return info


def _one_line(capsys, *phrases):
    err = capsys.readouterr().err.strip()
    assert '\n' not in err and err.startswith('mmattn: dataset check failed:'), err
    for phrase in phrases:
        assert phrase in err, err
    return err


def test_missing_coco_images(data, tmp_path, capsys):
    train_json = data / 'coco/annotations/instances_train.json'
    names = [im['file_name'] for im in json.load(open(train_json))['images']]
    for name in names[:2]:
        os.remove(data / 'coco/train' / name)
    _refused(train_tool.main, [DET, *_det_args(data, tmp_path / 'w')])
    _one_line(capsys, f'2 of {len(names)} images', names[0], names[1])

    val_json = data / 'coco/annotations/instances_val.json'
    first_val = json.load(open(val_json))['images'][0]['file_name']
    os.remove(data / 'coco/val' / first_val)
    _refused(test_tool.main, [DET, str(_some_checkpoint(tmp_path)),
                              *_det_args(data, tmp_path / 't')])
    _one_line(capsys, '1 of', first_val)


def _some_checkpoint(tmp_path):
    import torch
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': {}}, path)
    return path


def test_empty_annotations_and_unmatched_classes(data, tmp_path, capsys):
    train_json = data / 'coco/annotations/instances_train.json'
    original = json.load(open(train_json))
    _edit_json(train_json, lambda c: c.update(annotations=[]))
    _refused(train_tool.main, [DET, *_det_args(data, tmp_path / 'w')])
    _one_line(capsys, '"annotations" list', 'empty')

    with open(train_json, 'w') as f:
        json.dump(original, f)
    _refused(train_tool.main, [DET, *_det_args(data, tmp_path / 'w'),
                               "train_dataloader.dataset.metainfo.classes=('cat','dog')"])
    _one_line(capsys, 'none of the 2 class names', 'cat', 'rectangle')


def test_all_boxes_degenerate(data, tmp_path, capsys):
    train_json = data / 'coco/annotations/instances_train.json'

    def flatten(coco):
        for ann in coco['annotations']:
            ann['bbox'] = [ann['bbox'][0], ann['bbox'][1], 0.5, ann['bbox'][3]]
    coco = _edit_json(train_json, flatten)
    _refused(train_tool.main, [DET, *_det_args(data, tmp_path / 'w')])
    _one_line(capsys, f'all {len(coco["annotations"])} boxes', 'degenerate',
              f'id {coco["annotations"][0]["id"]}')


@pytest.mark.slow
def test_missing_ade_segmentation_maps(data, tmp_path, capsys):
    maps = sorted(os.listdir(data / 'ade20k/annotations/training'))
    os.remove(data / 'ade20k/annotations/training' / maps[0])
    _refused(train_tool.main, [SEG, *_seg_args(data, tmp_path / 'w')])
    _one_line(capsys, '1 of 4 images', 'no segmentation map', maps[0])

    # --skip-data-check: the run starts and meets the missing file in the dataloader
    with pytest.raises(FileNotFoundError):
        train_tool.main([SEG, '--skip-data-check', *_seg_args(data, tmp_path / 'skip')])


def test_intact_synthetic_data_passes(synthetic_data):
    """No false alarm on the demo configs' data (every split each tool reads)."""
    from mmengine.config import Config

    from mmattn.utils.data_check import data_content_problems
    for config, sub, args in ((DET, 'coco/', _det_args), (SEG, 'ade20k', _seg_args)):
        cfg = Config.fromfile(config)
        cfg.merge_from_dict(dict(
            a.split('=', 1) for a in args(synthetic_data, 'w')[3:] if 'max_' not in a))
        assert data_content_problems(cfg, ('train', 'val', 'test')) == [], config


def _edit_label(path, edit):
    """Rewrite one segmentation map png through ``edit(PIL image) -> PIL image``."""
    from PIL import Image
    with Image.open(path) as image:
        edited = edit(image.copy())
    edited.save(path)


def _with_value(value, everywhere=False):
    def edit(image):
        import numpy as np
        from PIL import Image
        pixels = np.array(image)
        if everywhere:
            pixels[:] = value
        else:
            pixels[:4, :4] = value
        return Image.fromarray(pixels)
    return edit


def test_label_values_the_loss_cannot_take(data, tmp_path, capsys):
    """Value 200 with reduce_zero_label and 5 classes (the loss would see target 199 at the
    first iteration): one line naming the count, the files and the value, for train and test."""
    maps = data / 'ade20k/annotations/training'
    names = sorted(os.listdir(maps))
    for name in names[1:3]:
        _edit_label(maps / name, _with_value(200))
    _refused(train_tool.main, [SEG, *_seg_args(data, tmp_path / 'w')])
    err = _one_line(capsys, f'2 of {len(names)} segmentation maps', 'loss cannot take',
                    f'{names[1]} (value 200)', f'{names[2]} (value 200)',
                    'num_classes=5', 'reduce_zero_label=True')
    assert 'allowed raw values: 0-150, 255' in err  # ADE ids outside the subset map to 255

    val_maps = data / 'ade20k/annotations/validation'
    first_val = sorted(os.listdir(val_maps))[0]
    _edit_label(val_maps / first_val, _with_value(254))
    _refused(test_tool.main, [SEG, str(_some_checkpoint(tmp_path)),
                              *_seg_args(data, tmp_path / 't')])
    _one_line(capsys, '1 of 2 segmentation maps', f'{first_val} (value 254)')


def test_rgb_and_half_size_label_maps(data, tmp_path, capsys):
    """An RGB label png and one at half the image size (the collate step would fail with
    "stack expects each tensor to be equal size", naming no file)."""
    from PIL import Image
    maps = data / 'ade20k/annotations/training'
    names = sorted(os.listdir(maps))
    _edit_label(maps / names[0], lambda image: image.convert('RGB'))
    _refused(train_tool.main, [SEG, *_seg_args(data, tmp_path / 'w')])
    _one_line(capsys, f'1 of {len(names)} segmentation maps', 'more than one channel',
              f'{names[0]} (mode RGB)')

    _edit_label(maps / names[0], lambda image: image.convert('L'))
    with Image.open(maps / names[3]) as image:
        width, height = image.size
    _edit_label(maps / names[3], lambda image: image.resize((width // 2, height // 2),
                                                            Image.NEAREST))
    _refused(train_tool.main, [SEG, *_seg_args(data, tmp_path / 'w')])
    _one_line(capsys, f'1 of {len(names)} segmentation maps', 'differ in size',
              f'{names[3]} ({width // 2}x{height // 2}, image {width}x{height})')


def test_label_rules_follow_the_config():
    """The raw values allowed: ADE20K (150 classes, reduce_zero_label), the demo's 5-class
    subset of ADE20K (ids of other classes become 255), and a dataset without
    reduce_zero_label."""
    from mmengine.config import Config

    from mmattn.utils.data_check import _dataset_class
    from mmattn.utils.label_check import describe_values, label_rules

    def allowed(cfg, **dataset):
        ds = dict(cfg.train_dataloader.dataset, **dataset)
        return describe_values(label_rules(cfg, ds, _dataset_class(ds))['valid'])

    ade = Config.fromfile(osp.join(REPO_ROOT, 'configs/seg/biformer_upernet.py'))
    assert allowed(ade) == '0-150, 255'
    demo = Config.fromfile(SEG)
    assert allowed(demo) == '0-150, 255'
    assert allowed(demo, metainfo=None) == '0-5, 255'
    assert allowed(demo, metainfo=None, reduce_zero_label=False) == '0-4, 255'
    # tools/test.py --tta: the segmentor is the TTA model's module
    tta = dict(model=dict(type='SegTTAModel', module=demo.model))
    ds = dict(demo.train_dataloader.dataset, metainfo=None)
    assert describe_values(label_rules(tta, ds, _dataset_class(ds))['valid']) == '0-5, 255'


def test_label_scan_in_worker_processes(tmp_path, monkeypatch, capsys):
    """Large sets are read by worker processes with progress lines; the result is the serial
    one, in input order."""
    import numpy as np
    from PIL import Image

    from mmattn.utils import label_check
    pairs = []
    for i in range(40):
        pixels = np.full((8, 12), i % 6, dtype=np.uint8)
        if i in (7, 31):
            pixels[0, 0] = 99
        Image.fromarray(pixels).save(tmp_path / f'{i}.png')
        Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(tmp_path / f'{i}.jpg')
        pairs.append((str(tmp_path / f'{i}.jpg'), str(tmp_path / f'{i}.png')))
    valid = np.zeros(256, dtype=bool)
    valid[:6] = valid[255] = True
    serial = label_check.scan_label_maps(pairs, valid, workers=0)
    assert serial == [(7, 'values', [99]), (31, 'values', [99])]
    monkeypatch.setattr(label_check, '_PROGRESS_FROM', 10)
    assert label_check.scan_label_maps(pairs, valid, workers=2) == serial
    err = capsys.readouterr().err
    assert 'checking 40 segmentation maps (2 processes)' in err
    assert 'checked 40 segmentation maps in' in err


@pytest.mark.slow
def test_bad_label_map_stops_train_tool_in_a_subprocess(data, tmp_path):
    """tools/train.py as users run it: exit code 2 and one line on stderr before the model is
    built; --skip-data-check still starts the run, which then fails at the first iteration."""
    import subprocess
    import sys
    maps = data / 'ade20k/annotations/training'
    name = sorted(os.listdir(maps))[0]
    _edit_label(maps / name, _with_value(200, everywhere=True))  # in every crop of batch 1
    cmd = [sys.executable, osp.join(REPO_ROOT, 'tools/train.py'), SEG]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd + _seg_args(data, tmp_path / 'w'), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    err = proc.stderr.strip()
    assert proc.returncode == 2, proc.stdout[-2000:] + err[-2000:]
    assert '\n' not in err and err.startswith('mmattn: dataset check failed: 1 of 4 '), err
    assert f'{name} (value 200)' in err and '--skip-data-check' in err
    assert 'Config:' not in proc.stdout  # stopped before the Runner logged anything

    proc = subprocess.run(cmd + ['--skip-data-check'] + _seg_args(data, tmp_path / 's'),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and 'out of bounds' in proc.stderr, proc.stderr[-2000:]
