"""Helpers the tests import (``from helpers import ...``): paths, tool loading, config and model
builders, one-step loss / predict checks, Runner options for the synthetic data. The fixtures and
hooks are in conftest.py (tests/ has no __init__.py: mmseg installs a top-level ``tests``)."""
import importlib.util
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(name):
    """Import ``tools/<name>.py`` as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f'mmattn_tools_{name}',
                                                  osp.join(REPO_ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def last_checkpoint(work_dir):
    """The path ``work_dir/last_checkpoint`` names (None if absent or empty)."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker) as f:
        return f.read().strip() or None


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


# ------------------------------------------------- shared by the config / model tests


def config_paths(prefixes, *folders):
    """Sorted repo-relative paths of ``configs/<folder>/<prefix>*.py`` (prefix: str or tuple)."""
    import glob
    prefixes = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
    return sorted({osp.relpath(p, REPO_ROOT) for folder in folders for prefix in prefixes
                   for p in glob.glob(osp.join(REPO_ROOT, 'configs', folder, f'{prefix}*.py'))})


def load_config(path, scope=None):
    """Config.fromfile of a repo-relative path; checks it imports mmattn (and its scope)."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, path))
    assert cfg.custom_imports == dict(imports=['mmattn'], allow_failed_imports=False)
    if scope is not None:
        assert cfg.default_scope == scope
    return cfg


def config_header(path):
    """The text of a config before its ``_base_`` line (where it states its origin)."""
    with open(osp.join(REPO_ROOT, path)) as f:
        return f.read().split('_base_')[0]


def build_model(model_cfg, scope):
    """Build a model config with the MODELS registry of ``scope`` ('mmdet' / 'mmseg')."""
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS.build(model_cfg)


def tiny_model_cfg(model_cfg, arch, old_widths, aux_channels, uper_channels):
    """A copy of ``model_cfg`` with the backbone arch swapped for ``arch`` (no init_cfg) and the
    channels that follow the backbone widths re-wired; auxiliary / UPerHead channels capped
    (speed only)."""
    import copy
    model = copy.deepcopy(model_cfg)
    model.backbone.arch = copy.deepcopy(arch)
    model.backbone.init_cfg = None
    new_widths = arch['embed_dims']
    for key in ('neck', 'decode_head'):
        if key in model and list(model[key].get('in_channels', [])) == list(old_widths):
            model[key].in_channels = new_widths
    aux = model.get('auxiliary_head')
    if aux is not None:
        assert aux.in_channels == old_widths[aux.in_index]
        aux.in_channels = new_widths[aux.in_index]
        aux.channels = min(aux.channels, aux_channels)
    if model.get('decode_head', {}).get('type') == 'UPerHead':
        model.decode_head.channels = min(model.decode_head.channels, uper_channels)
    return model


def _seg_batch(num, height, width, num_classes):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for _ in range(num):
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(height, width),
                                             ori_shape=(height, width),
                                             pad_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, height, width)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def seg_loss_step(model, height, width, num_classes=150):
    """One training loss + backward of a segmentor on 2 random images with random labels (the
    PPM's BatchNorm on 1x1 maps needs 2 images), seed 0; returns (loss, log_vars)."""
    model.train()
    torch.manual_seed(0)
    data = model.data_preprocessor(_seg_batch(2, height, width, num_classes), True)
    loss, log_vars = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    return loss, log_vars


def seg_predict(model, height, width):
    """Eval prediction of a segmentor on one random image (the first image of
    :func:`seg_loss_step`); checks the predicted map has the input size."""
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        data = model.data_preprocessor(_seg_batch(1, height, width, 1), False)
        results = model(**data, mode='predict')
    assert results[0].pred_sem_seg.data.shape[-2:] == (height, width)
    return results


def _det_num_classes(model):
    return (model.roi_head.bbox_head.num_classes
            if hasattr(model, 'roi_head') else model.bbox_head.num_classes)


def det_loss_step(model, with_mask, image_shapes=((3, 128, 160), (3, 96, 128))):
    """One training loss + backward of a detector on mmdet's demo inputs, seed 0;
    returns (loss, log_vars)."""
    from mmdet.testing import demo_mm_inputs
    model.train()
    torch.manual_seed(0)
    data = demo_mm_inputs(len(image_shapes), image_shapes=list(image_shapes),
                          num_classes=_det_num_classes(model), with_mask=with_mask)
    loss, log_vars = model.parse_losses(model(**model.data_preprocessor(data, True),
                                              mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    return loss, log_vars


def det_loss_step_and_predict(model, with_mask, image_shapes=((3, 128, 160), (3, 96, 128)),
                              predict_shape=(3, 112, 150)):
    """:func:`det_loss_step`, then an eval prediction on one demo image that must give
    ``pred_instances``; returns the loss step's log_vars."""
    from mmdet.testing import demo_mm_inputs
    _, log_vars = det_loss_step(model, with_mask, image_shapes)
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            demo_mm_inputs(1, image_shapes=[predict_shape],
                           num_classes=_det_num_classes(model)), False)
        results = model(**data, mode='predict')
    assert len(results) == 1 and 'pred_instances' in results[0]
    return log_vars


# ------------------------------------------- Runner runs on the synthetic data (tools/train.py)


def coco_runner_options(data_root, score_thr_key):
    """--cfg-options of a 2-iteration (1 epoch of 4 images) detection run on the synthetic COCO
    under ``data_root`` with validation; ``score_thr_key`` set to 0 (an untrained model scores
    low; CocoMetric needs detections)."""
    coco = osp.join(data_root, 'coco')
    ann = osp.join(coco, 'annotations', 'instances_val.json')
    return [
        f'train_dataloader.dataset.data_root={coco}',
        f'val_dataloader.dataset.data_root={coco}',
        f'test_dataloader.dataset.data_root={coco}',
        f'val_evaluator.ann_file={ann}',
        f'test_evaluator.ann_file={ann}',
        'train_dataloader.batch_size=2',
        'train_dataloader.batch_sampler=None',  # plain batches: 4 images -> exactly 2 iterations
        'train_cfg.max_epochs=1',
        'train_cfg.val_interval=1',
        f'{score_thr_key}=0.0',
    ]


def ade_runner_options(data_root):
    """--cfg-options of a 2-iteration segmentation run on the synthetic ADE20K under
    ``data_root``, validating at iteration 2."""
    ade = osp.join(data_root, 'ade20k')
    return [
        f'train_dataloader.dataset.data_root={ade}',
        f'val_dataloader.dataset.data_root={ade}',
        f'test_dataloader.dataset.data_root={ade}',
        'train_dataloader.batch_size=2',
        'train_cfg.max_iters=2',
        'train_cfg.val_interval=2',
    ]


def val_metrics(runner):
    """{metric: value} of the runner's last validation (the 'val/' prefix dropped)."""
    return {k[len('val/'):]: v.current()
            for k, v in runner.message_hub.log_scalars.items() if k.startswith('val/')}
