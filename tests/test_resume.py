"""Exact resume and atomic checkpoints, through tools/train.py and the real Runner.

A run killed with SIGKILL at a checkpoint taken in the middle of an epoch and restarted with
``--resume`` ends at the configured iteration and logs the same loss at every later iteration
as the uninterrupted run (bit-equal: CPU, num_workers=0, deterministic settings), for an
epoch-based detection config and an iteration-based segmentation config with their random
augmentation and dropout. A checkpoint write that fails (disk full) leaves no truncated file
and ``--resume`` continues from the previous one; damaged or truncated newest checkpoints are
passed over for the newest intact one, with one line naming each and its damage.
"""
import errno
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import REPO_ROOT, config_paths, last_checkpoint, load_tool, run_tool

train_tool = load_tool('train')

DET_CONFIG = """
_base_ = [{base!r}]
data_root = {root!r}
train_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root))  # 4 iterations / epoch
train_cfg = dict(max_epochs=3, val_interval=100)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=3, by_epoch=False, max_keep_ckpts=10))
log_processor = dict(window_size=1)
randomness = dict(seed=0, deterministic=True)
"""

SEG_CONFIG = """
_base_ = [{base!r}]
data_root = {root!r}
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))  # 2 iterations / pass
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={iters}, val_interval=3)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval={ckpt_every}, max_keep_ckpts=10),
    visualization=dict(type='SegVisualizationHook', draw=False))
log_processor = dict(window_size=1)
randomness = dict(seed=0, deterministic=True)
"""


def write_det_config(tmp_path, synthetic_data):
    path = tmp_path / 'det_resume.py'
    path.write_text(DET_CONFIG.format(
        base=osp.join(REPO_ROOT, 'configs/demo/biformer_retinanet_synthetic.py'),
        root=osp.join(synthetic_data, 'coco') + '/'))
    return str(path)


def write_seg_config(tmp_path, synthetic_data, iters=6, ckpt_every=3):
    """The demo UPerNet with its random resize / crop / flip / photometric pipeline and the
    decode heads' dropout: every iteration draws from python, numpy and torch generators."""
    path = tmp_path / 'seg_resume.py'
    path.write_text(SEG_CONFIG.format(
        base=osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py'),
        root=osp.join(synthetic_data, 'ade20k'), iters=iters, ckpt_every=ckpt_every))
    return str(path)


def newest_run_losses(work_dir):
    """{iter: loss} logged by the newest run in ``work_dir`` (its own scalars.json only)."""
    runs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    losses = {}
    with open(runs[-1]) as f:
        for line in f:
            row = json.loads(line)
            if 'loss' in row:
                losses[row['iter']] = row['loss']
    return losses


def kill_at_first_checkpoint(cmd, work_dir, cwd):
    """Start ``cmd``, SIGKILL it as soon as a checkpoint is complete; the checkpoint's name."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while last_checkpoint(work_dir) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    return osp.basename(last_checkpoint(work_dir))


def check_killed_run_resumes_exactly(config, tmp_path, total_iters, iters_per_pass):
    train = [sys.executable, osp.join(REPO_ROOT, 'tools/train.py'), config, '--work-dir']
    whole, killed = str(tmp_path / 'whole'), str(tmp_path / 'killed')
    run_tool(train + [whole], cwd=tmp_path)
    reference = newest_run_losses(whole)
    assert sorted(reference) == list(range(1, total_iters + 1))

    name = kill_at_first_checkpoint(train + [killed], killed, tmp_path)
    resumed_from = int(name.split('_')[1].split('.')[0])
    assert resumed_from % iters_per_pass, f'{name} is not in the middle of an epoch'

    log = run_tool(train + [killed, '--resume'], cwd=tmp_path)
    assert f'iter: {resumed_from}' in log
    resumed = newest_run_losses(killed)
    # the same iterations (no epoch replayed, no iteration past the end) and the same losses
    assert sorted(resumed) == list(range(resumed_from + 1, total_iters + 1))
    assert {it: resumed[it] for it in resumed} == {it: reference[it] for it in resumed}


@pytest.mark.slow
def test_epoch_based_det_killed_mid_epoch_resumes_exactly(synthetic_data, tmp_path):
    """RetinaNet, 3 epochs x 4 iterations, a checkpoint every 3 iterations (3, 6, 9 are inside
    an epoch); RandomFlip draws from numpy's generator."""
    check_killed_run_resumes_exactly(write_det_config(tmp_path, synthetic_data), tmp_path,
                                     total_iters=12, iters_per_pass=4)


@pytest.mark.slow
def test_iter_based_seg_killed_mid_pass_resumes_exactly(synthetic_data, tmp_path):
    """UPerNet, 6 iterations over a shuffled InfiniteSampler (2 iterations per pass over the
    data), checkpoint and validation every 3 iterations."""
    check_killed_run_resumes_exactly(write_seg_config(tmp_path, synthetic_data), tmp_path,
                                     total_iters=6, iters_per_pass=2)


def _train_seg(config, work_dir, *extra):
    return train_tool.main([config, '--work-dir', str(work_dir), *extra])


@pytest.mark.slow
def test_disk_full_leaves_no_truncated_checkpoint(synthetic_data, tmp_path, monkeypatch):
    from mmengine.fileio.backends import LocalBackend

    config = write_seg_config(tmp_path, synthetic_data, iters=4, ckpt_every=2)
    work_dir = tmp_path / 'work'
    put = LocalBackend.put

    def full_disk(self, obj, filepath):
        if 'iter_4' in str(filepath):  # half the bytes reach the disk, then ENOSPC
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))
        return put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', full_disk)
    with pytest.raises(SystemExit) as info:
        _train_seg(config, work_dir)
    message = str(info.value)
    assert '\n' not in message and str(work_dir) in message and 'No space left' in message
    assert not (work_dir / 'iter_4.pth').exists()
    assert not glob.glob(str(work_dir / '*.tmp')) and not glob.glob(str(work_dir / '.*.tmp'))
    assert last_checkpoint(work_dir) == str(work_dir / 'iter_2.pth')

    monkeypatch.setattr(LocalBackend, 'put', put)
    runner = _train_seg(config, work_dir, '--resume')
    assert runner.iter == 4 and (work_dir / 'iter_4.pth').is_file()
    saved = torch.load(work_dir / 'iter_4.pth', map_location='cpu', weights_only=True)
    assert saved['meta']['iter'] == 4


@pytest.mark.slow
def test_resume_names_every_damaged_checkpoint_it_passes_over(synthetic_data, tmp_path):
    """The newest checkpoint with 4 KB of garbage in its middle (same size: torch.load accepts
    it) and the one before cut short: ``tools/train.py --resume`` in a subprocess passes over
    both, names each with its damage in one line, resumes from the newest intact one and
    finishes; ``tools/test.py`` refuses the damaged one in one line."""
    from test_checkpoint_files import write_garbage_in_middle

    config = write_seg_config(tmp_path, synthetic_data, iters=4, ckpt_every=1)
    work_dir = tmp_path / 'work'
    _train_seg(config, work_dir)
    write_garbage_in_middle(work_dir / 'iter_4.pth')
    data = (work_dir / 'iter_3.pth').read_bytes()
    (work_dir / 'iter_3.pth').write_bytes(data[:len(data) // 3])  # e.g. a copy cut short

    log = run_tool([sys.executable, osp.join(REPO_ROOT, 'tools/train.py'), config,
                    '--work-dir', str(work_dir), '--resume'], cwd=tmp_path)
    lines = [ln for ln in log.splitlines() if 'is unreadable' in ln]
    assert len(lines) == 1, log[-3000:]
    line = lines[0]
    assert f'{work_dir / "iter_4.pth"} is unreadable (corrupt PyTorch checkpoint' in line
    assert 'CRC-32 mismatch' in line
    assert f'{work_dir / "iter_3.pth"} is unreadable (truncated PyTorch checkpoint' in line
    assert line.endswith(f'resuming from {work_dir / "iter_2.pth"}')
    assert 'resumed epoch: 0, iter: 2' in log
    assert last_checkpoint(work_dir) == str(work_dir / 'iter_4.pth')
    saved = torch.load(work_dir / 'iter_4.pth', map_location='cpu', weights_only=True)
    assert saved['meta']['iter'] == 4

    write_garbage_in_middle(work_dir / 'iter_4.pth')
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools/test.py'), config,
                           str(work_dir / 'iter_4.pth'), '--work-dir', str(tmp_path / 'test')],
                          cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and err, proc.stdout[-2000:]
    assert err[-1].startswith('tools/test.py: ') and 'CRC-32 mismatch' in err[-1], err[-5:]
    assert str(work_dir / 'iter_4.pth') in err[-1]


def test_every_config_trains_with_exact_resume_and_atomic_checkpoints(tmp_path):
    """tools/train.py switches every mmattn config (det: epoch-based, seg: iteration-based) to
    the resumable loop, batch sampler and hook, to atomic checkpoints, and saves the last
    completed iteration on an error (tests/test_crash_checkpoint.py)."""
    configs = config_paths('', 'det', 'seg', 'demo')
    assert len(configs) > 30
    for path in configs:
        args = train_tool.parse_args([osp.join(REPO_ROOT, path), '--work-dir', str(tmp_path)])
        cfg, scope = train_tool.build_cfg(args)
        expected = 'ResumableEpochBasedTrainLoop' if scope == 'mmdet' \
            else 'ResumableIterBasedTrainLoop'
        assert cfg.train_cfg.type == expected, path
        assert cfg.train_dataloader.batch_sampler.type == 'ResumableBatchSampler', path
        hooks = [h['type'] for h in cfg.custom_hooks]
        assert hooks.count('ExactResumeHook') == hooks.count('ExceptionCheckpointHook') == 1, path
        assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook', path
