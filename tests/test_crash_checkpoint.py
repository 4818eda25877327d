"""A training run that fails keeps its work: tools/train.py saves the last completed iteration
when training raises, the file holds what a regular checkpoint of that iteration holds (weights,
buffers, optimizer, schedulers, counters, random states and position in the epoch), and
``--resume`` continues exactly; the failing file is named in the last line. ``--check-images``
finds a damaged image before training."""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import REPO_ROOT, last_checkpoint, load_tool, run_tool
from test_resume import newest_run_losses

train_tool = load_tool('train')

# RetinaNet demo, 2 epochs x 2 iterations of 2 images in file order (no shuffling, plain
# batching): iteration 2 loads images 2 and 3, RandomFlip draws for image 2 before image 3
CONFIG = """
_base_ = [{base!r}]
data_root = {root!r}
train_dataloader = dict(
    batch_size=2, sampler=dict(type='DefaultSampler', shuffle=False), batch_sampler=None,
    dataset=dict(data_root=data_root))
train_cfg = dict(max_epochs=2, val_interval={val_interval})
val_dataloader = dict(dataset=dict(data_root=data_root))
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_dataloader = None
test_evaluator = None
test_cfg = None
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval={every}, by_epoch={by_epoch}, max_keep_ckpts=10))
log_processor = dict(window_size=1)
randomness = dict(seed=0, deterministic=True)
"""


def write_config(tmp_path, root, name='crash.py', every=100, by_epoch=False, val_interval=100):
    path = tmp_path / name
    path.write_text(CONFIG.format(
        base=osp.join(REPO_ROOT, 'configs/demo/biformer_retinanet_synthetic.py'),
        root=osp.join(str(root), 'coco') + '/', every=every, by_epoch=by_epoch,
        val_interval=val_interval))
    return str(path)


@pytest.fixture
def data(synthetic_data, tmp_path):
    """A private copy of the synthetic sets (the tests damage it)."""
    return shutil.copytree(synthetic_data, tmp_path / 'data')


def train_image(root, index):
    """The file of training sample ``index`` (CocoDataset keeps the json's order)."""
    with open(osp.join(root, 'coco', 'annotations', 'instances_train.json')) as f:
        images = json.load(f)['images']
    return osp.join(root, 'coco', 'train', images[index]['file_name'])


def _equal(a, b, where='checkpoint'):
    """Recursive equality of two loaded checkpoint parts (tensors bit-equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), (where, sorted(set(a) ^ set(b)))
        for key in a:
            _equal(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f'{where}[{i}]')
    else:
        assert a == b, (where, a, b)


def assert_same_state(saved, regular):
    """``saved`` holds what the regular checkpoint ``regular`` of that iteration holds: every
    weight and buffer, the optimizer and schedulers, the counters and the exact-resume state
    (random states, position in the epoch). Logged-value histories and times may differ."""
    a = torch.load(saved, map_location='cpu', weights_only=True)
    b = torch.load(regular, map_location='cpu', weights_only=True)
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        _equal(a[key], b[key], key)
    for key in ('epoch', 'iter', 'exact_resume'):
        _equal(a['meta'][key], b['meta'][key], f'meta.{key}')


@pytest.mark.slow
def test_truncated_image_saves_the_last_iteration_and_resume_continues_exactly(data, tmp_path):
    """A truncated jpg (real file: its first 8000 bytes) in the training set, second image of
    iteration 2: tools/train.py (subprocess) ends with one line naming the file and iter_1.pth;
    iter_1.pth equals the regular checkpoint of iteration 1 of an intact run (the random states
    are those before image 2's flip was drawn); once the image is restored, --resume trains
    iterations 2-4 with the uninterrupted run's losses."""
    train = [sys.executable, osp.join(REPO_ROOT, 'tools/train.py')]
    reference = tmp_path / 'reference'
    run_tool(train + [write_config(tmp_path, data, 'every.py', every=1), '--work-dir',
                      str(reference)], cwd=tmp_path)
    expected = newest_run_losses(reference)
    assert sorted(expected) == [1, 2, 3, 4]

    image = train_image(data, 3)
    intact = open(image, 'rb').read()
    with open(image, 'wb') as f:
        f.write(intact[:8000])
    config = write_config(tmp_path, data)
    work = tmp_path / 'work'
    proc = subprocess.run(train + [config, '--work-dir', str(work)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('tools/train.py: training stopped loading the batch of iteration 2: '
                           f'AssertionError: failed to load image: {image}; '
                           f'iteration 1 saved to {work / "iter_1.pth"}'), last
    assert '--resume' in last and '--check-images' in last, last
    assert last_checkpoint(work) == str(work / 'iter_1.pth')
    assert_same_state(work / 'iter_1.pth', reference / 'iter_1.pth')

    with open(image, 'wb') as f:
        f.write(intact)
    log = run_tool(train + [config, '--work-dir', str(work), '--resume'], cwd=tmp_path)
    assert 'resumed epoch: 0, iter: 1' in log
    resumed = newest_run_losses(work)
    assert resumed == {it: expected[it] for it in (2, 3, 4)}


def _fail(monkeypatch, cls, name, at, exc=RuntimeError('injected failure')):
    """``cls.name`` raises ``exc`` on its ``at``-th call (1-based)."""
    original = getattr(cls, name)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise exc
        return original(*args, **kwargs)

    monkeypatch.setattr(cls, name, failing)


@pytest.fixture(scope='module')
def reference_runs(synthetic_data, tmp_path_factory):
    """Regular checkpoints of every iteration, and of every epoch, of the uninterrupted run."""
    tmp = tmp_path_factory.mktemp('reference')
    iters, epochs = tmp / 'iters', tmp / 'epochs'
    train_tool.main([write_config(tmp, synthetic_data, 'i.py', every=1), '--work-dir',
                     str(iters)])
    train_tool.main([write_config(tmp, synthetic_data, 'e.py', every=1, by_epoch=True),
                     '--work-dir', str(epochs)])
    return iters, epochs


def _crash(config, work, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        train_tool.main([config, '--work-dir', str(work)])
    line = str(info.value.code)
    assert '\n' not in line and line.startswith('tools/train.py: training stopped '), line
    assert 'Traceback' in capsys.readouterr().err
    return line


@pytest.mark.slow
def test_error_inside_the_step_restores_the_buffers(synthetic_data, reference_runs, tmp_path,
                                                    monkeypatch, capsys):
    """An error between the forward pass of iteration 2 (which updated the BatchNorm
    statistics) and its optimizer step: iter_1.pth equals the regular checkpoint of
    iteration 1."""
    from mmengine.optim import OptimWrapper
    _fail(monkeypatch, OptimWrapper, 'backward', at=2)
    work = tmp_path / 'work'
    line = _crash(write_config(tmp_path, synthetic_data), work, capsys)
    assert 'in iteration 2: RuntimeError: injected failure; iteration 1 saved to ' \
        f'{work / "iter_1.pth"}' in line, line
    assert_same_state(work / 'iter_1.pth', reference_runs[0] / 'iter_1.pth')


@pytest.mark.slow
def test_error_in_validation_after_an_epoch_saves_the_epoch(synthetic_data, reference_runs,
                                                             tmp_path, monkeypatch, capsys):
    """An error in the validation after epoch 1 (schedulers already stepped for the epoch):
    epoch_1.pth equals the regular epoch checkpoint."""
    from mmengine.runner import ValLoop
    _fail(monkeypatch, ValLoop, 'run_iter', at=1, exc=KeyboardInterrupt())
    work = tmp_path / 'work'
    line = _crash(write_config(tmp_path, synthetic_data, val_interval=1), work, capsys)
    assert 'in the validation after iteration 2: KeyboardInterrupt; iteration 2 saved to ' \
        f'{work / "epoch_1.pth"}' in line, line
    assert_same_state(work / 'epoch_1.pth', reference_runs[1] / 'epoch_1.pth')


@pytest.mark.slow
def test_error_after_the_optimizer_step_saves_nothing(synthetic_data, tmp_path, monkeypatch,
                                                      capsys):
    """An error in a hook after iteration 2's optimizer step: its weights belong to no
    completed iteration, nothing is written and the line says so; an error before any
    iteration completed propagates unchanged."""
    from mmengine.hooks import ParamSchedulerHook
    _fail(monkeypatch, ParamSchedulerHook, 'after_train_iter', at=2)
    work = tmp_path / 'work'
    line = _crash(write_config(tmp_path, synthetic_data), work, capsys)
    assert 'in iteration 2: RuntimeError: injected failure; not saved: the error came after ' \
        'the optimizer step of iteration 2' in line, line
    assert not glob.glob(str(work / '*.pth'))

    monkeypatch.undo()
    from mmengine.optim import OptimWrapper
    _fail(monkeypatch, OptimWrapper, 'backward', at=1)
    with pytest.raises(RuntimeError, match='injected failure'):
        train_tool.main([write_config(tmp_path, synthetic_data), '--work-dir',
                         str(tmp_path / 'first')])


@pytest.mark.slow
def test_check_images_names_the_damaged_file_before_training(data, tmp_path):
    """tools/train.py --check-images: one line naming the truncated jpg, before the Runner."""
    image = train_image(data, 1)
    with open(image, 'r+b') as f:
        f.truncate(6000)
    proc = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools/train.py'), write_config(tmp_path, data),
         '--work-dir', str(tmp_path / 'w'), '--check-images'], cwd=tmp_path,
        capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith('mmattn: image check failed: 1 of 6 images cannot be decoded'), \
        lines
    assert f'{image} (6000 bytes, truncated or not an image)' in lines[0]
    assert not (tmp_path / 'w').exists()


def test_check_images_in_worker_processes_with_progress(data, monkeypatch, capsys):
    """An empty image and one that is not an image in the segmentation set: both named, the
    same in this process and in 2 worker processes with the progress lines (threshold lowered
    for the tiny set)."""
    from mmengine.config import Config

    from mmattn.utils import image_check
    images = sorted((data / 'ade20k/images/training').iterdir())
    images[0].write_bytes(b'')
    images[1].write_bytes(b'\x89PNG not really')
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py'))
    cfg.merge_from_dict({f'{s}_dataloader.dataset.data_root': str(data / 'ade20k')
                         for s in ('train', 'val')})
    serial = image_check.image_problems(cfg, ('train', 'val'), workers=0)
    assert serial == [
        f'1 of 6 images are empty files: {images[0]} (0 bytes)',
        f'1 of 6 images cannot be decoded (LoadImageFromFile would fail on them): {images[1]} '
        '(15 bytes, truncated or not an image)'], serial
    capsys.readouterr()
    monkeypatch.setattr(image_check, '_PROGRESS_FROM', 2)
    assert image_check.image_problems(cfg, ('train', 'val'), workers=2) == serial
    err = capsys.readouterr().err
    assert 'checking 6 images (2 processes)' in err and 'checked 6 images in' in err, err

