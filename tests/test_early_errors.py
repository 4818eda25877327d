"""Errors that come first: tools/train.py and tools/test.py stop with one short message before
the Runner logs its environment and config, for a checkpoint that does not fit the model (or
carries code), a neck / head whose in_channels do not match the backbone, a config key nothing
reads (``--cfg-options max_epochs=1``, ``train_dataloader.batch_szie=2``), a work dir that is a
file and a directory given as a checkpoint; the README's ONNX export works without the
pretrained file."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import REPO_ROOT, config_paths, load_tool

train_tool = load_tool('train')
RETINA = osp.join(REPO_ROOT, 'configs/demo/biformer_retinanet_synthetic.py')
UPERNET = osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py')
FPN = osp.join(REPO_ROOT, 'configs/demo/biformer_fpn_synthetic.py')
MAX_LINES = 4  # a message of a few lines, no environment or config print-out


def _coco(data):
    coco = osp.join(data, 'coco')
    ann = osp.join(coco, 'annotations', 'instances_val.json')
    return [f'{split}_dataloader.dataset.data_root={coco}/' for split in ('train', 'val', 'test')
            ] + [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']


def _ade(data):
    ade = osp.join(data, 'ade20k')
    return [f'{split}_dataloader.dataset.data_root={ade}' for split in ('train', 'val', 'test')]


def _run(tool, *args, cwd):
    """``tools/<tool>.py args`` in a subprocess: (exit code, non-empty output lines)."""
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', f'{tool}.py'), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return proc.returncode, lines


def _one_message(tool, *args, cwd, phrases=(), max_lines=MAX_LINES):
    code, lines = _run(tool, *args, cwd=cwd)
    assert code != 0, lines[-5:]
    assert 0 < len(lines) <= max_lines, '\n'.join(lines[:40])
    assert lines[0].startswith(f'tools/{tool}.py: '), lines
    text = '\n'.join(lines)
    for phrase in phrases:
        assert phrase in text, text
    return text


@pytest.fixture(scope='module')
def retina_state(tmp_path_factory):
    """The demo RetinaNet's state dict and one of a wider backbone (another variant)."""
    from mmengine.config import Config
    from helpers import build_model
    import mmattn  # noqa: F401
    cfg = Config.fromfile(RETINA)
    base = build_model(cfg.model, 'mmdet').state_dict()
    wider = cfg.model.copy()
    wider.backbone = dict(wider.backbone, arch=dict(wider.backbone.arch, head_dim=8,
                                                    embed_dims=[32, 64, 128, 512]))
    wider.neck = dict(wider.neck, in_channels=[32, 64, 128, 512])
    return base, build_model(wider, 'mmdet').state_dict()


@pytest.mark.slow
def test_checkpoint_that_does_not_fit_stops_before_the_runner(retina_state, synthetic_data,
                                                              tmp_path):
    """tools/test.py CKPT, tools/train.py --resume PATH and load_from with another variant's
    checkpoint: the mismatch (names and shapes, checked on a meta-device model) is the whole
    output; a pickle that would run code is refused in one line of under 300 characters."""
    import pickle
    _, wider = retina_state
    path = str(tmp_path / 'wider.pth')
    torch.save({'state_dict': wider, 'meta': {}}, path)
    data = _coco(synthetic_data)
    phrases = ('wider.pth does not match the RetinaNet', 'shape mismatch', 'another variant')
    _one_message('test', RETINA, path, '--cfg-options', *data, cwd=tmp_path, phrases=phrases)
    _one_message('train', RETINA, '--work-dir', str(tmp_path / 'w'), '--resume', path,
                 '--cfg-options', *data, cwd=tmp_path, phrases=phrases)
    _one_message('train', RETINA, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *data,
                 f'load_from={path}', cwd=tmp_path, phrases=phrases[:1])

    marker = tmp_path / 'ran'
    evil = tmp_path / 'evil.pth'
    with open(evil, 'wb') as f:  # protocol 4, as pickle.dump writes by default
        pickle.dump({'state_dict': {}, 'meta': _RunsCode(str(marker))}, f)
    text = _one_message('test', RETINA, str(evil), '--cfg-options', *data, cwd=tmp_path,
                        phrases=('outside the weights-only allow-list (posix.system)',
                                 '--trusted'), max_lines=1)
    assert len(text) < 300, text
    assert not marker.exists()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_refused_pickle_names_its_globals(tmp_path):
    """The refusal names the globals outside the allow-list, for the zip and legacy formats."""
    import argparse

    from mmattn.converters.files import load_checkpoint_file
    for zipped in (True, False):
        path = tmp_path / f'ns_{zipped}.pth'
        torch.save({'state_dict': {'w': torch.zeros(2)}, 'args': argparse.Namespace(lr=1)}, path,
                   _use_new_zipfile_serialization=zipped)
        with pytest.raises(RuntimeError) as info:
            load_checkpoint_file(str(path))
        message = str(info.value)
        assert '(argparse.Namespace)' in message and '\n' not in message, message
        assert len(message) < 300 and 'torch._utils' not in message, message


@pytest.mark.slow
def test_neck_in_channels_that_do_not_match_the_backbone(synthetic_data, tmp_path):
    """A Semantic FPN whose neck expects another variant's widths: one line from tools/train.py
    (a meta-device forward of backbone + neck) with the widths to use, before any logging."""
    _one_message('train', FPN, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                 *_ade(synthetic_data), 'model.neck.in_channels=[64,128,256,512]', cwd=tmp_path,
                 phrases=('model.neck.in_channels is [64, 128, 256, 512]',
                          'BiFormer backbone outputs [32, 64, 128, 256] channels',
                          'use in_channels=[32, 64, 128, 256] in model.neck'), max_lines=1)


@pytest.mark.parametrize('config, override, phrases', [
    (UPERNET, {'model.decode_head.in_channels': [64, 128, 256, 512]},
     ('model.decode_head.in_channels is [64, 128, 256, 512]',
      'use in_channels=[32, 64, 128, 256] in model.decode_head')),
    (UPERNET, {'model.auxiliary_head.in_channels': 256},
     ('model.auxiliary_head.in_channels is 256', '(in_index 2)',
      'use in_channels=128 in model.auxiliary_head')),
    (RETINA, {'model.bbox_head.in_channels': 256},
     ('model.bbox_head.in_channels is 256', 'the neck (FPN) outputs [64, 64, 64, 64, 64]',
      'use in_channels=64 in model.bbox_head')),
    (RETINA, {'model.backbone.out_indices': (1, 2, 3)},
     ('model.neck.in_channels is [32, 64, 128, 256]', 'out_indices (1, 2, 3)',
      'use in_channels=[64, 128, 256] in model.neck')),
])
def test_head_in_channels_that_do_not_match(config, override, phrases):
    from mmengine.config import Config

    from mmattn.utils.tool_setup import check_model_cfg_or_exit
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(override)
    cfg.launcher = 'none'
    with pytest.raises(SystemExit) as info:
        check_model_cfg_or_exit(cfg, cfg.default_scope, 'train')
    message = str(info.value.code)
    assert '\n' not in message, message
    for phrase in phrases:
        assert phrase in message, message


@pytest.mark.slow
def test_every_config_builds_and_fits_on_the_meta_device():
    """No config of configs/ is refused by the model check (backbone, neck and head widths
    agree), and it returns a meta-device model whose names and shapes the checkpoint check
    reads (built on the CPU and moved when a constructor needs real tensors)."""
    from mmengine.config import Config

    from mmattn.utils.tool_setup import check_model_cfg_or_exit
    paths = config_paths('', 'demo', 'det', 'seg', 'plug')
    assert len(paths) > 40
    for path in paths:
        cfg = Config.fromfile(osp.join(REPO_ROOT, path))
        cfg.launcher = 'none'
        model = check_model_cfg_or_exit(cfg, cfg.default_scope, 'train')
        assert all(p.is_meta for p in model.parameters()), path


@pytest.mark.slow
def test_top_level_key_nothing_reads_names_the_key_meant(synthetic_data, tmp_path):
    """--cfg-options max_epochs=1 / max_iters=1 (which the loop never reads: it would train the
    configured 12 epochs) and a misspelled dataloader key: one line each, naming the key."""
    work = ['--work-dir', str(tmp_path / 'w'), '--cfg-options', *_coco(synthetic_data)]
    for key in ('max_epochs', 'max_iters'):
        _one_message('train', RETINA, *work, f'{key}=1', cwd=tmp_path, max_lines=1,
                     phrases=(f'{key}=1 is a top-level key nothing reads',
                              'train_cfg.max_epochs (now 12)', 'set train_cfg.max_epochs=1'))
    _one_message('train', RETINA, *work, 'train_dataloader.batch_szie=2', cwd=tmp_path,
                 max_lines=1, phrases=('train_dataloader.batch_szie is not an argument of the '
                                       'DataLoader; did you mean train_dataloader.batch_size',))
    assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('override, phrase', [
    ({'max_iters': 1}, 'set train_cfg.max_iters=1'),
    ({'lr': 0.1}, 'set optim_wrapper.optimizer.lr=0.1'),
    ({'train_cfg.max_iter': 1}, 'did you mean train_cfg.max_iters (now 600)?'),
    ({'val_cfg.fp61': True}, 'val_cfg.fp61 is not an argument of ValLoop; did you mean '
                             'val_cfg.fp16?'),
    ({'wrok_dir': 'x'}, 'nothing reads the top-level key wrok_dir; did you mean work_dir?'),
    ({'seed': 1}, 'mmengine reads randomness.seed: set randomness.seed=1 instead'),
    ({'data_root': '/d'}, "the run reads train_dataloader.dataset.data_root (now "
                          "'data/synthetic/ade20k'), val_dataloader.dataset.data_root"),
    ({'crop_size': (64, 64)}, 'set train_dataloader.dataset.pipeline.3.crop_size=(64, 64)'),
    ({'num_classes': 7}, 'model.decode_head.num_classes (now 5), '
                         'model.auxiliary_head.num_classes (now 5); set those instead'),
])
def test_config_key_problems(override, phrase):
    from mmengine.config import Config

    from mmattn.utils.config_check import config_key_problems
    cfg = Config.fromfile(UPERNET)
    cfg.merge_from_dict(override)
    problems = config_key_problems(cfg, 'mmseg', list(override))
    assert len(problems) == 1 and phrase in problems[0], problems


@pytest.mark.slow
def test_config_key_check_flags_no_key_of_a_real_config(tmp_path):
    """Every config of configs/ loads through tools/train.py (which runs the check on the train
    and val sections) and has no key flagged in any section, also after tools/train.py put in
    the resumable loop and batch sampler (top-level variables that feed train_cfg and friends
    are read through them)."""
    from mmattn.utils.config_check import config_key_problems
    paths = sorted(glob.glob(osp.join(REPO_ROOT, 'configs', '*', '*.py')))
    assert len(paths) > 40
    for path in paths:
        args = train_tool.parse_args([path, '--work-dir', str(tmp_path)])
        cfg, scope = train_tool.build_cfg(args)
        assert config_key_problems(cfg, scope) == [], path


@pytest.mark.slow
def test_test_tool_work_dir_and_checkpoint_directory(synthetic_data, tmp_path):
    """tools/test.py --work-dir naming a file: one line (as tools/train.py); a directory given
    as the checkpoint: one line naming the checkpoint its last_checkpoint points to."""
    a_file = tmp_path / 'a_file'
    a_file.write_text('x')
    ckpt = tmp_path / 'run' / 'epoch_1.pth'
    ckpt.parent.mkdir()
    torch.save({'state_dict': {}}, ckpt)
    (tmp_path / 'run' / 'last_checkpoint').write_text(str(ckpt))
    data = ['--cfg-options', *_coco(synthetic_data)]
    _one_message('test', RETINA, str(ckpt), '--work-dir', str(a_file), *data, cwd=tmp_path,
                 max_lines=1, phrases=(f'work_dir {a_file} is a file, not a directory',))
    _one_message('test', RETINA, str(ckpt.parent), *data, cwd=tmp_path, max_lines=1,
                 phrases=(f'{ckpt.parent} is a directory, not a checkpoint file',
                          f'pass {ckpt} (its last_checkpoint)'))


def test_test_tool_read_only_work_dir(synthetic_data, tmp_path, monkeypatch):
    """A work dir that cannot be written (read-only: simulated for root, which writes anyway)."""
    import errno
    import tempfile
    test_tool = load_tool('test')

    read_only_dir, create = str(tmp_path / 'ro'), tempfile.NamedTemporaryFile

    def read_only(*args, **kwargs):  # a file created in the work dir is refused
        if str(kwargs.get('dir', '')) == read_only_dir:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return create(*args, **kwargs)

    ckpt = tmp_path / 'c.pth'
    torch.save({'state_dict': {}}, ckpt)
    monkeypatch.setattr(tempfile, 'NamedTemporaryFile', read_only)
    with pytest.raises(SystemExit) as info:
        test_tool.main([RETINA, str(ckpt), '--work-dir', str(tmp_path / 'ro'),
                        '--cfg-options', *_coco(synthetic_data)])
    message = str(info.value.code)
    assert message == (f'tools/test.py: work_dir {tmp_path / "ro"} is not writable: '
                       'Permission denied'), message


def test_readme_onnx_export_without_the_pretrained_file(tmp_path, monkeypatch, capsys):
    """The export example of docs/deploy.md on a fresh checkout (no checkpoints/nat_tiny.pth):
    one line says the export uses random weights, and the export runs (stubbed here: the
    dynamo export takes a minute; test_readme_onnx_export_subprocess runs it)."""
    export = load_tool('deploy/export_onnx')
    monkeypatch.chdir(tmp_path)
    model, _ = export.build_model(osp.join(REPO_ROOT, 'configs/det/nat_retinanet.py'))
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'checkpoints/nat_tiny.pth' in err, err
    assert 'exporting random weights' in err and 'pass a CHECKPOINT' in err, err
    assert model.backbone.init_cfg is None and not model.training


@pytest.mark.deploy
def test_readme_onnx_export_subprocess(tmp_path):
    """The command of docs/deploy.md (fixed 64x64 instead of --dynamic) in a fresh folder."""
    proc = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools/deploy/export_onnx.py'),
         osp.join(REPO_ROOT, 'configs/det/nat_retinanet.py'), '--backbone-only', '--shape', '64',
         '64'], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'exporting random weights' in proc.stderr and 'Traceback' not in proc.stderr
    assert (tmp_path / 'work_dirs/onnx/nat_retinanet_backbone.onnx').is_file()
