"""Data checked before the first iteration: tools/train.py and tools/test.py stop with one line
(the count and the first offending entries) for missing image or segmentation files, an empty
annotations list, class names matching no category and boxes that are all degenerate;
``--skip-data-check`` bypasses the check."""
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
    _refused(test_tool.main, [DET, str(_some_checkpoint(tmp_path)), *_det_args(data, tmp_path / 't')])
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
