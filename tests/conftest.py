"""Shared pytest fixtures (tests/ has no __init__.py: mmseg installs a top-level ``tests``)."""
import importlib.util
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(name):
    """Import ``tools/<name>.py`` as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f'mmattn_tools_{name}',
                                                  osp.join(REPO_ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def synthetic_data(tmp_path_factory):
    """A tiny synthetic COCO + ADE20K pair (4 train / 2 val images each); returns its root."""
    root = tmp_path_factory.mktemp('synthetic')
    load_tool('make_synthetic').make_synthetic(str(root), num_train=4, num_val=2, seed=0,
                                               verbose=False)
    return str(root)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


DETERMINISTIC_SEG = """
_base_ = [{base!r}]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=False),  # same size: per-image mean losses
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2,
    sampler=dict(type='InfiniteSampler', shuffle={shuffle}),
    dataset=dict(data_root={root!r}, pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
model = dict(
    backbone=dict(norm_cfg=dict(type='SyncBN')),
    decode_head=dict(dropout_ratio=0.0),
    auxiliary_head=dict(dropout_ratio=0.0))
train_cfg = dict(max_iters={iters}, val_interval=1000)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval={ckpt_every}, max_keep_ckpts=10),
    visualization=dict(type='SegVisualizationHook', draw=False))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
"""


def write_deterministic_seg_config(tmp_path, synthetic_data, iters=3, ckpt_every=3, shuffle=False):
    """A BiFormer UPerNet config whose training is a deterministic function of its iteration:
    fixed-size resize only, no dropout / drop path, every BN a SyncBN, loss + lr logged every
    iteration without smoothing, no validation."""
    path = tmp_path / 'deterministic_seg.py'
    path.write_text(DETERMINISTIC_SEG.format(
        base=osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py'),
        root=osp.join(synthetic_data, 'ade20k'), iters=iters, ckpt_every=ckpt_every,
        shuffle=shuffle))
    return str(path)


def read_scalars(work_dir):
    """{iter: {'loss': .., 'lr': ..}} from mmengine's vis_data/scalars.json (all runs in it)."""
    rows = {}
    for root, _, files in os.walk(work_dir):
        if 'scalars.json' in files and root.endswith('vis_data'):
            with open(osp.join(root, 'scalars.json')) as f:
                for line in f:
                    row = json.loads(line)
                    if 'loss' in row:
                        rows[row['iter']] = row
    return rows


def run_tool(args, cwd, timeout=300, env=None):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable, **(env or {}))
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr
