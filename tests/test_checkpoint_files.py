"""Strict weights for every backbone; readable key-mismatch errors; empty, truncated,
random-bytes and damaged (bytes overwritten in place) checkpoint files refused in one line by
every entry point (convert_ckpt.py, init_cfg, load_from, tools/test.py, --resume, mmengine's own
loader)."""
import os
import os.path as osp
import re
import subprocess
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


def write_garbage_in_middle(path, size=4096):
    """Overwrite ``size`` bytes in the middle of ``path`` with random bytes (same file size), as
    a failing disk or a bad copy does; returns the path."""
    length = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.seek(length // 2 - size // 2)
        f.write(os.urandom(size))
    return str(path)


def _bad_files(tmp_path):
    """{kind: (path, phrase the one-line error must hold)}."""
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.zeros(16384)}}, good)
    data = good.read_bytes()
    damaged = bytearray(data)
    damaged[len(data) // 2 - 2048:len(data) // 2 + 2048] = os.urandom(4096)
    files = {
        'empty': (b'', 'not a PyTorch checkpoint'),
        'truncated': (data[:len(data) // 2], 'truncated'),
        'random': (os.urandom(5000), 'not a PyTorch checkpoint'),
        'damaged': (bytes(damaged), 'CRC-32 mismatch'),
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


def test_damaged_checkpoint_is_caught_by_its_crc(tmp_path):
    """4 KB of garbage in the middle of a real checkpoint (same size): torch.load with
    weights_only=True returns the changed tensors; every mmattn reader refuses the file in one
    line, mmengine's own loader (Runner.load_checkpoint / resume, init_cfg) included."""
    from mmengine.runner.checkpoint import _load_checkpoint

    from mmattn.converters import CheckpointFileError, load_checkpoint_file
    from mmattn.converters.files import checkpoint_file_problem
    from mmattn.engine import find_resume_checkpoint

    state = {'state_dict': {'w': torch.arange(1024, dtype=torch.float32)},
             'optimizer': {'state': {0: {'exp_avg': torch.ones(131072)}}}}  # the middle
    path = tmp_path / 'iter_4.pth'
    torch.save(state, path)
    assert checkpoint_file_problem(str(path)) is None
    size = os.path.getsize(path)
    write_garbage_in_middle(path)
    assert os.path.getsize(path) == size
    loaded = torch.load(path, map_location='cpu', weights_only=True)  # torch does not notice
    assert not torch.equal(loaded['optimizer']['state'][0]['exp_avg'],
                           state['optimizer']['state'][0]['exp_avg'])

    problem = checkpoint_file_problem(str(path))
    assert problem.startswith('corrupt PyTorch checkpoint') and 'CRC-32 mismatch' in problem
    for read in (load_checkpoint_file, _load_checkpoint):
        with pytest.raises(CheckpointFileError) as info:
            read(str(path))
        _one_line(str(info.value), str(path), 'CRC-32 mismatch')
    model = BiFormer(**TINY_BIFORMER, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointFileError, match='CRC-32 mismatch'):
        model.init_weights()
    with pytest.raises(FileNotFoundError, match=r'iter_4\.pth: corrupt PyTorch checkpoint'):
        find_resume_checkpoint(str(tmp_path))

    # written with CRCs off (torch.serialization.set_crc32_options(False)): nothing to verify
    legacy = tmp_path / 'no_crc.pth'
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(state, legacy)
    finally:
        torch.serialization.set_crc32_options(True)
    assert checkpoint_file_problem(str(legacy)) is None


@pytest.mark.slow
def test_convert_ckpt_refuses_a_damaged_file(tmp_path):
    """tools/convert_ckpt.py in a subprocess: the intact official file converts, the same file
    with 4 KB of garbage in its middle stops with one line naming it and the damage."""
    sys.path.insert(0, osp.join(REPO_ROOT, 'tests', 'models'))
    from test_biformer import official_state_dict

    src = tmp_path / 'biformer_official.pth'
    torch.save({'model': {k: v.float() for k, v in official_state_dict(
        [32, 64, 128, 256], [1, 1, 2, 1]).items()}}, src)
    tool = [sys.executable, osp.join(REPO_ROOT, 'tools/convert_ckpt.py'), 'biformer']
    ok = subprocess.run(tool + [str(src), str(tmp_path / 'ok.pth')], capture_output=True,
                        text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    write_garbage_in_middle(src)
    bad = subprocess.run(tool + [str(src), str(tmp_path / 'bad.pth')], capture_output=True,
                         text=True, cwd=tmp_path)
    assert bad.returncode != 0 and not (tmp_path / 'bad.pth').exists()
    _one_line(bad.stderr, str(src), 'corrupt PyTorch checkpoint')



def _line_runner(work_dir, max_iters, resume=False, loop='IterBasedTrainLoop'):
    """The real Runner on the smallest trainable model (one linear layer, four samples)."""
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Line(BaseModel):

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, inputs, data_samples=None, mode='loss'):
            loss = self.linear(inputs).square().mean()
            return dict(loss=loss) if mode == 'loss' else [loss]

    return Runner(
        model=Line(), work_dir=str(work_dir), experiment_name=f'line{max_iters}',
        train_dataloader=dict(dataset=[dict(inputs=torch.ones(2))] * 4, batch_size=1,
                              num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        train_cfg=dict(type=loop, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1,
                                           by_epoch=False, max_keep_ckpts=2)),
        resume=resume, default_scope='mmengine')


@pytest.mark.slow
def test_rotation_goes_on_after_resume(tmp_path):
    """Each checkpoint records itself among the kept ones (as mmengine's hook does), so a run
    resumed from it rotates it out in turn: no checkpoint outlives ``max_keep_ckpts``."""
    _line_runner(tmp_path, 4).train()
    # weights_only: mmattn's allow-list covers mmengine's message hub
    saved = torch.load(tmp_path / 'iter_4.pth', weights_only=True)['message_hub']
    assert saved['runtime_info']['keep_ckpt_ids'] == [3, 4]
    assert saved['runtime_info']['last_ckpt'] == str(tmp_path / 'iter_4.pth')
    _line_runner(tmp_path, 6, resume=True).train()
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith('.pth')) == \
        ['iter_5.pth', 'iter_6.pth']


@pytest.mark.slow
def test_resuming_a_checkpoint_without_exact_state_says_so(tmp_path, capfd):
    import mmattn.engine  # noqa: F401  (registers the resumable loops)
    _line_runner(tmp_path, 2).train()  # mmengine's own loop: no exact-resume state saved
    capfd.readouterr()
    _line_runner(tmp_path, 3, resume=True, loop='ResumableIterBasedTrainLoop').train()
    assert re.search(r'holds no exact-resume state .* from iteration 2', capfd.readouterr().out)


@pytest.mark.slow
def test_failed_write_keeps_the_kept_checkpoints_and_their_record(tmp_path, monkeypatch):
    from mmengine.runner import Runner

    from mmattn.engine.checkpoint import CheckpointWriteError
    _line_runner(tmp_path, 4).train()
    runner = _line_runner(tmp_path, 6, resume=True)

    def disk_full(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(Runner, 'save_checkpoint', disk_full)
    with pytest.raises(CheckpointWriteError, match='No space left'):
        runner.train()
    hook = next(h for h in runner.hooks if type(h).__name__ == 'AtomicCheckpointHook')
    # as before the failed write: a resumed hook has written nothing yet
    assert list(hook.keep_ckpt_ids) == [3, 4] and hook.last_ckpt is None
    assert runner.message_hub.get_info('keep_ckpt_ids') == [3, 4]
    assert runner.message_hub.get_info('last_ckpt') == str(tmp_path / 'iter_4.pth')
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith('.pth')) == \
        ['iter_3.pth', 'iter_4.pth']
