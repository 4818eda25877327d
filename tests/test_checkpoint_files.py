"""Strict weights for every backbone; readable key-mismatch errors; empty, truncated and
random-bytes checkpoint files refused in one line by every entry point (convert_ckpt.py,
init_cfg, load_from, tools/test.py, --resume)."""
import os
import os.path as osp
import re
import sys

import pytest
import torch
from helpers import REPO_ROOT, load_tool

import mmattn  # noqa: F401
from mmattn.converters.common import CheckpointKeyError
from mmattn.models import NAT, BiFormer, SlidePVT

TINY_BIFORMER = dict(arch=dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 1, 1], head_dim=8,
                               mlp_ratio=2), n_win=4, topks=(1, 2, 4, -2))
SEG_DEMO = osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py')


def test_slidepvt_pretrained_is_strict(tmp_path):
    """A checkpoint of another family is refused with the keys; its own loads exactly."""
    torch.manual_seed(0)
    source = SlidePVT(arch='tiny')
    own = tmp_path / 'slidepvt.pth'
    torch.save({'state_dict': source.state_dict()}, own)
    loaded = SlidePVT(arch='tiny', init_cfg=dict(type='Pretrained', checkpoint=str(own)))
    loaded.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    other = tmp_path / 'biformer.pth'
    torch.save({'state_dict': BiFormer(**TINY_BIFORMER).state_dict()}, other)
    model = SlidePVT(arch='tiny', init_cfg=dict(type='Pretrained', checkpoint=str(other)))
    with pytest.raises(CheckpointKeyError, match=r'(?s)does not match SlidePVT.*missing \(\d+\): '
                       r'layers\.0\..*unexpected \(\d+\): stages\.'):
        model.init_weights()


def test_key_mismatch_message_is_readable():
    """NAT-Tiny converted as BiFormer: the first 20 keys, then counts per prefix."""
    from mmattn.converters import convert_checkpoint
    state = NAT(arch='tiny').state_dict()
    with pytest.raises(CheckpointKeyError) as info:
        convert_checkpoint('biformer', {'model': state})
    message = str(info.value)
    listed = message.split(' ... ')[0]
    assert len(re.findall(r'levels\.\d', listed)) == 20
    assert re.search(r'\(\+\d+ more: \d+ under levels\.\d', message)
    assert len(message) < 2000


def _bad_files(tmp_path):
    """{kind: (path, phrase the one-line error must hold)}."""
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.zeros(4096)}}, good)
    data = good.read_bytes()
    files = {
        'empty': (b'', 'not a PyTorch checkpoint'),
        'truncated': (data[:len(data) // 2], 'truncated'),
        'random': (os.urandom(5000), 'not a PyTorch checkpoint'),
    }
    out = {}
    for kind, (content, phrase) in files.items():
        path = tmp_path / f'{kind}.pth'
        path.write_bytes(content)
        out[kind] = (str(path), phrase)
    return out


def _one_line(message, path, phrase):
    assert '\n' not in message.strip(), message
    assert path in message and phrase in message, message
    assert 'allow-list' not in message and '--trusted' not in message, message


def test_unreadable_files_in_convert_and_init_cfg(tmp_path, monkeypatch):
    from mmattn.converters import load_pretrained
    convert = load_tool('convert_ckpt')
    for path, phrase in _bad_files(tmp_path).values():
        monkeypatch.setattr(sys, 'argv', ['convert_ckpt.py', 'biformer', path,
                                          str(tmp_path / 'out.pth')])
        with pytest.raises(SystemExit) as info:
            convert.main()
        _one_line(str(info.value.code), path, phrase)
        model = BiFormer(**TINY_BIFORMER, init_cfg=dict(type='Pretrained', checkpoint=path))
        with pytest.raises(RuntimeError) as info:
            model.init_weights()
        _one_line(str(info.value), path, phrase)
        with pytest.raises(RuntimeError) as info:
            load_pretrained(SlidePVT(arch='tiny'), None, path)
        _one_line(str(info.value), path, phrase)


def test_unreadable_files_in_train_and_test_tools(tmp_path, synthetic_data):
    """load_from, tools/test.py CKPT, --resume PATH (mmdet) and --resume from a work dir whose
    checkpoints are all unreadable: one line, before any model is built."""
    train, test = load_tool('train'), load_tool('test')
    ade = osp.join(synthetic_data, 'ade20k')
    det = osp.join(REPO_ROOT, 'configs/demo/biformer_retinanet_synthetic.py')
    coco = osp.join(synthetic_data, 'coco') + '/'
    seg_data = [f'train_dataloader.dataset.data_root={ade}',
                f'val_dataloader.dataset.data_root={ade}',
                f'test_dataloader.dataset.data_root={ade}']
    for kind, (path, phrase) in _bad_files(tmp_path).items():
        work = str(tmp_path / f'work_{kind}')
        runs = [
            (train.main, [SEG_DEMO, '--work-dir', work, '--cfg-options', f'load_from={path}',
                          *seg_data]),
            (test.main, [SEG_DEMO, path, '--work-dir', work, '--cfg-options', *seg_data]),
            (train.main, [det, '--work-dir', work, '--resume', path, '--cfg-options',
                          f'train_dataloader.dataset.data_root={coco}',
                          f'val_dataloader.dataset.data_root={coco}',
                          f'val_evaluator.ann_file={coco}annotations/instances_val.json']),
        ]
        for main, argv in runs:
            with pytest.raises(SystemExit) as info:
                main(argv)
            _one_line(str(info.value.code), path, phrase)
        # --resume from the work dir: last_checkpoint names the bad file, no other checkpoint
        os.makedirs(work, exist_ok=True)
        resume_path = osp.join(work, 'iter_2.pth')
        with open(path, 'rb') as src, open(resume_path, 'wb') as dst:
            dst.write(src.read())
        with open(osp.join(work, 'last_checkpoint'), 'w') as f:
            f.write(resume_path)
        with pytest.raises(SystemExit) as info:
            train.main([SEG_DEMO, '--work-dir', work, '--resume', '--cfg-options', *seg_data])
        _one_line(str(info.value.code), resume_path, phrase)
