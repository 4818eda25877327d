"""Errors a user reads through tools/train.py and tools/test.py: a config error is one or two
lines (no config dump, no traceback; an unknown type names the nearest registered ones), the
missing-pretrained hint is a command convert_ckpt.py accepts, and a work_dir that cannot be
written is named in one line."""
import os.path as osp

import pytest
from helpers import REPO_ROOT, config_paths, load_tool

train_tool, test_tool = load_tool('train'), load_tool('test')
SEG = osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py')


def _seg_data(synthetic_data):
    ade = osp.join(synthetic_data, 'ade20k')
    return [f'{split}_dataloader.dataset.data_root={ade}' for split in ('train', 'val', 'test')]


@pytest.mark.parametrize('override, phrases', [
    ('model.backbone.type=BiFormr', ("unknown type 'BiFormr'", "did you mean 'BiFormer'")),
    ('model.decode_head.type=UPerHaed', ("unknown type 'UPerHaed'", "did you mean 'UPerHead'")),
    ('model.backbone.arch=huge', ('BiFormer', "arch 'huge'", 'choose one of')),
    ('model.backbone.n_wins=4', ('BiFormer', "unexpected keyword argument 'n_wins'")),
])
def test_config_error_is_one_or_two_lines(override, phrases, synthetic_data, tmp_path, capsys):
    for main, argv in ((train_tool.main, [SEG]), (test_tool.main, [SEG, _checkpoint(tmp_path)])):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(argv + ['--work-dir', str(tmp_path / 'w'), '--cfg-options',
                         *_seg_data(synthetic_data), override])
        message = str(info.value.code)
        assert message.count('\n') <= 1 and len(message) < 400, message
        for phrase in phrases:
            assert phrase in message, message
        printed = capsys.readouterr()
        assert (printed.out + printed.err).count('\n') <= 2, printed  # no config dump


def _checkpoint(tmp_path):
    import torch
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': {}}, path)
    return str(path)


def test_missing_pretrained_hint_is_a_command_convert_ckpt_accepts(tmp_path, monkeypatch, capsys):
    from mmengine.config import Config

    from mmattn.converters import CONVERTERS
    from mmattn.registry import MODELS
    from mmattn.utils import check_pretrained_or_exit
    monkeypatch.chdir(tmp_path)  # the configs' checkpoints/... do not exist here
    seen = set()
    for path in config_paths('', 'det', 'seg'):
        cfg = Config.fromfile(osp.join(REPO_ROOT, path))
        with pytest.raises(SystemExit):
            check_pretrained_or_exit(cfg)
        err = capsys.readouterr().err
        backbone = cfg.model.backbone.type
        if MODELS.get(backbone).family is None:  # no converter (Slide-PVT: no released weights)
            assert 'convert_ckpt' not in err and 'no released weights' in err, err
            continue
        family = err.split('tools/convert_ckpt.py ')[1].split()[0]
        assert family in CONVERTERS, (path, err)
        seen.add((backbone, family))
    assert ('SlideSwin', 'slide_swin') in seen


def test_work_dir_that_cannot_be_written_is_named(synthetic_data, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a directory')
    work_dir = blocker / 'work'
    with pytest.raises(SystemExit) as info:
        train_tool.main([SEG, '--work-dir', str(work_dir), '--cfg-options',
                         *_seg_data(synthetic_data)])
    message = str(info.value.code)
    assert '\n' not in message and f'work_dir {work_dir} is not writable' in message, message
