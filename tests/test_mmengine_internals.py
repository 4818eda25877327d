"""mmengine's private names are used in mmattn/engine/mmengine_internals.py only, which refuses
an mmengine outside its supported range in one line, and whose seams behave on the installed
mmengine as it relies on."""
import ast
import collections
import os.path as osp
import re
import types
from pathlib import Path

import mmengine
import pytest
import torch
from mmengine.utils import digit_version

from mmattn.engine import mmengine_internals as internals

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / 'mmattn'
INTERNALS = PACKAGE / 'engine' / 'mmengine_internals.py'

# Private names of mmengine objects mmattn relies on (or might reach for): only
# mmengine_internals.py may use them, as attributes, imports or overriding methods.
PRIVATE_MMENGINE_NAMES = {
    '_InfiniteDataloaderIterator', '_save_checkpoint_with_step', '_save_checkpoint',
    '_save_best_checkpoint', '_schemes', '_get_checkpoint_loader', '_module_dict',
    '_decide_current_val_interval', '_epoch', '_iter', '_max_epochs', '_max_iters',
    '_train_loop', '_val_loop', '_test_loop', '_train_dataloader', '_hooks',
    '_load_checkpoint', '_runtime_info', '_log_scalars',
}


# ----------------------------------------------------------------------------- version check


def test_the_installed_mmengine_is_supported():
    internals.check_mmengine_version()
    internals.check_mmengine_version(mmengine.__version__)


@pytest.mark.parametrize('version', ['0.10.7', '0.10.8', '0.10.7.post1'])
def test_versions_in_the_range_pass(version):
    internals.check_mmengine_version(version)


@pytest.mark.parametrize('version', ['0.10.6', '0.10.7rc1', '0.9.1', '0.11.0rc0', '0.11.0',
                                     '1.0.0'])
def test_another_mmengine_is_one_clear_error(version, monkeypatch):
    monkeypatch.setattr(mmengine, '__version__', version)
    with pytest.raises(ImportError) as info:
        internals.check_mmengine_version()  # reads mmengine.__version__
    message = str(info.value)
    assert '\n' not in message
    assert f'mmengine=={version} is installed' in message
    assert 'supports mmengine>=0.10.7,<0.11.0 only' in message
    assert message.endswith('run: pip install "mmengine>=0.10.7,<0.11.0"')


def test_the_check_runs_before_any_private_import():
    """On another mmengine a private name may be gone: the check must come first."""
    tree = ast.parse(INTERNALS.read_text())
    check_at = private_import_at = None
    for node in tree.body:
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, 'id', None) == 'check_mmengine_version'):
            check_at = node.lineno
        if isinstance(node, ast.ImportFrom) and any(a.name.startswith('_') for a in node.names):
            private_import_at = private_import_at or node.lineno
    assert check_at is not None and private_import_at is not None
    assert check_at < private_import_at


def test_setup_py_requires_the_supported_range():
    required = re.search(r"'mmengine>=([\d.]+),<([\d.]+)'", (REPO_ROOT / 'setup.py').read_text())
    assert required, 'setup.py has no mmengine>=A,<B requirement'
    assert digit_version(required[1]) == digit_version(internals.MMENGINE_MIN_VERSION)
    assert digit_version(required[2]) == digit_version(internals.MMENGINE_MAX_VERSION)
    pins = (REPO_ROOT / 'requirements' / 'runtime.txt').read_text()
    assert f'mmengine=={internals.MMENGINE_MIN_VERSION}' in pins


# ----------------------------------------------------------------------------- source scan


def _private_mmengine_uses(path):
    """``(line, what)`` for each private mmengine name ``path`` imports or uses."""
    uses = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('mmengine'):
            parts = node.module.split('.')
            uses += [(node.lineno, f'from {node.module} import {a.name}') for a in node.names
                     if a.name.startswith('_') or any(p.startswith('_') for p in parts)]
        elif isinstance(node, ast.Import):
            uses += [(node.lineno, f'import {a.name}') for a in node.names
                     if a.name.startswith('mmengine')
                     and any(p.startswith('_') for p in a.name.split('.'))]
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_MMENGINE_NAMES:
            uses.append((node.lineno, f'.{node.attr}'))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.name in PRIVATE_MMENGINE_NAMES:
            uses.append((node.lineno, f'def {node.name}'))
        elif isinstance(node, ast.Name) and node.id in PRIVATE_MMENGINE_NAMES:
            uses.append((node.lineno, node.id))
    return uses


def test_no_module_but_mmengine_internals_uses_private_mmengine_names():
    found = []
    for path in sorted(PACKAGE.rglob('*.py')):
        if path == INTERNALS:
            continue
        found += [f'{path.relative_to(REPO_ROOT)}:{line}: {what}'
                  for line, what in _private_mmengine_uses(path)]
    assert not found, 'private mmengine names outside mmattn/engine/mmengine_internals.py ' \
        '(move the use there, saying why no public API serves):\n' + '\n'.join(found)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    sample = tmp_path / 'sample.py'
    sample.write_text(
        'from mmengine.runner.loops import (IterBasedTrainLoop,\n'
        '                                   _InfiniteDataloaderIterator)\n'
        'from mmengine.runner._flexible_runner import FlexibleRunner\n'
        'import mmengine._strategy\n'
        'n = runner.train_loop._iter\n'
        'class Hook:\n'
        '    def _save_checkpoint_with_step(self, runner, step, meta):\n'
        '        return registry._module_dict\n')
    assert sorted(line for line, _ in _private_mmengine_uses(sample)) == [1, 3, 4, 5, 7, 8]
    assert _private_mmengine_uses(INTERNALS)  # the module itself does use them


# ----------------------------------------------------------------------------- the seams


def test_step_checkpoint_hook_routes_every_write_through_save_step():
    calls = []

    class Recording(internals.StepCheckpointHook):
        def save_step(self, runner, step, meta):
            calls.append((step, meta))

    runner = types.SimpleNamespace(epoch=1, iter=7)
    Recording(interval=1, by_epoch=False)._save_checkpoint(runner)
    Recording(interval=1, by_epoch=True)._save_checkpoint(runner)
    assert calls == [(8, dict(epoch=1, iter=8)), (2, dict(epoch=2, iter=7))]


class _MessageHub:
    def __init__(self):
        self.info = {}

    def update_info(self, key, value):
        self.info[key] = value


def test_record_step_checkpoint_keeps_mmengines_rotation(tmp_path):
    hook = types.SimpleNamespace(max_keep_ckpts=2, keep_ckpt_ids=collections.deque(maxlen=2),
                                 out_dir=str(tmp_path), filename_tmpl='iter_{}.pth',
                                 last_ckpt=None)
    runner = types.SimpleNamespace(message_hub=_MessageHub())
    path = osp.join(str(tmp_path), 'iter_{}.pth').format
    outdated = [internals.record_step_checkpoint(hook, runner, step, path(step))
                for step in (3, 6, 6, 9)]
    assert outdated == [None, None, None, path(3)]  # a step saved twice counts once
    assert list(hook.keep_ckpt_ids) == [6, 9] and hook.last_ckpt == path(9)
    assert runner.message_hub.info == dict(last_ckpt=path(9), keep_ckpt_ids=[6, 9])
    hook.max_keep_ckpts = -1  # keep everything
    assert internals.record_step_checkpoint(hook, runner, 12, path(12)) is None
    assert list(hook.keep_ckpt_ids) == [6, 9]


class _EpochSampler(torch.utils.data.Sampler):
    def __init__(self):
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(range(2))

    def __len__(self):
        return 2


def test_restarted_iterator_continues_the_pass_count(monkeypatch):
    monkeypatch.setattr('time.sleep', lambda seconds: None)  # mmengine waits 2 s per restart
    sampler = _EpochSampler()
    loader = torch.utils.data.DataLoader(list(range(2)), sampler=sampler, batch_size=1)
    loop = types.SimpleNamespace(dataloader=loader, dataloader_iterator=None)
    internals.restart_infinite_iterator(loop, passes_done=4)
    batches = [int(next(loop.dataloader_iterator)) for _ in range(3)]
    assert batches == [0, 1, 0]
    assert sampler.epochs == [5]  # the next pass is seeded as the uninterrupted run's
    internals.restart_infinite_iterator(loop)
    assert [int(next(loop.dataloader_iterator)) for _ in range(3)] == [0, 1, 0]
    assert sampler.epochs == [5, 1]


def test_local_checkpoint_loader_is_the_verified_one():
    """``import mmattn`` wrapped mmengine's local loader (found through the private
    ``_schemes``) with the file check, once."""
    loader = internals.local_checkpoint_loader()
    assert loader is not None and getattr(loader, '_mmattn_verified', False)
    from mmattn.engine.checkpoint import install_verified_local_loader
    install_verified_local_loader()
    assert internals.local_checkpoint_loader() is loader
