"""Train a detector or segmentor from an mmattn (or any mmdet / mmseg) config.

Upstream-compatible front end of mmdet's and mmseg's ``tools/train.py``: the same flags, and the
semantics follow ``default_scope`` of the config (``mmdet``: ``--resume [PATH]`` and
``--auto-scale-lr``; ``mmseg``: ``--resume`` is a flag that resumes from the work dir).
Differences: ``import mmattn`` first (registers the backbones and installs the checkpoint allow-list
for ``--resume``/``load_from``), ``--amp`` is refused on a machine without CUDA instead of failing
inside mmengine, and the dataset is checked before the Runner is built (one-line error for missing
files, empty or unmatched annotations; ``--skip-data-check`` skips the content checks). Every run
resumes exactly (random states and sampler position are saved in each checkpoint, which is written
atomically); ``--resume`` passes over unreadable checkpoints to the newest intact one, naming every
file it skipped with its damage in one line. A run that fails after an iteration completed saves
that iteration (resumable exactly) and ends with one line naming the error and the checkpoint.
Before the Runner logs anything, the config's keys (one nothing reads, such as a top-level
``max_epochs``), the model (unknown types, in_channels that do not match the backbone) and a
``load_from`` / ``--resume`` checkpoint (names and shapes) are checked.

    python tools/train.py configs/demo/biformer_maskrcnn_synthetic.py --work-dir work_dirs/demo
    python tools/train.py configs/seg/biformer_upernet.py --resume
    bash tools/dist_train.sh configs/det/biformer_maskrcnn.py 8
"""
import argparse
import logging
import os.path as osp
import sys
import traceback
import warnings

# mmengine 0.10.7 imports pkg_resources (gone in setuptools 82, so <82 is pinned); its
# deprecation notice is noise for users of these tools
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

import mmattn  # noqa: F401,E402  (first: registrations + checkpoint allow-list)
from mmattn.utils import check_data_or_exit, check_pretrained_or_exit  # noqa: E402
from mmattn.converters.check import check_checkpoint_or_exit  # noqa: E402
from mmattn.engine import (CheckpointWriteError, enable_exact_resume,  # noqa: E402
                           find_resume_checkpoint, save_on_exception, use_atomic_checkpoints)
from mmattn.utils.tool_cli import (add_common_args, exit_on_registry_error,  # noqa: E402
                                   parse_tool_args, run_and_close)
from mmattn.utils.tool_setup import (build_runner, check_checkpoint_file_or_exit,  # noqa: E402
                                     check_model_cfg_or_exit, check_work_dir_or_exit,
                                     load_tool_config)

import torch  # noqa: E402
from mmengine.logging import print_log  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector (mmdet) or segmentor (mmseg)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true', default=False,
        help='enable automatic-mixed-precision training (CUDA only)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the LR by total batch / auto_scale_lr.base_batch_size (mmdet configs)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the latest checkpoint in the work dir; mmdet configs also accept a '
        'checkpoint path (--resume PATH)')
    add_common_args(parser)
    return parse_tool_args(parser, argv)


def apply_amp(cfg, scope):
    if not torch.cuda.is_available():
        raise SystemExit('tools/train.py: --amp needs a CUDA GPU (mmengine AmpOptimWrapper '
                         'supports CUDA/NPU/MLU/MUSA only); run without --amp on CPU')
    optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if optim_wrapper == 'AmpOptimWrapper':
        print_log('AMP training is already enabled in your config.', logger='current',
                  level=logging.WARNING)
        return
    if scope == 'mmseg' and optim_wrapper != 'OptimWrapper':
        raise SystemExit('tools/train.py: --amp is only supported when the optimizer wrapper '
                         f'type is OptimWrapper, got {optim_wrapper}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def build_cfg(args):
    cfg, scope = load_tool_config(args, 'train')

    if args.amp:
        apply_amp(cfg, scope)

    if args.auto_scale_lr:
        if scope != 'mmdet':
            raise SystemExit('tools/train.py: --auto-scale-lr is an mmdet option; this is an '
                             f'{scope} config')
        if 'auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr and \
                'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or "auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your configuration file.')

    if args.resume is not None:
        if args.resume == 'auto':
            cfg.resume = True
            cfg.load_from = None
        elif scope == 'mmdet':
            cfg.resume = True
            cfg.load_from = args.resume
        else:
            raise SystemExit('tools/train.py: mmseg configs resume from the work dir only: use '
                             '--resume without a path (or --cfg-options load_from=PATH '
                             'resume=True)')
    enable_exact_resume(cfg)
    use_atomic_checkpoints(cfg)
    return cfg, scope


def select_resume_checkpoint(cfg):
    """``--resume`` without a path: the newest intact checkpoint of the work dir (one line when
    the newest one is unreadable and an older one is used)."""
    if not cfg.get('resume') or cfg.get('load_from'):
        return
    try:
        path, note = find_resume_checkpoint(cfg.work_dir)
    except FileNotFoundError as exc:
        raise SystemExit(f'tools/train.py: {exc}') from exc
    if note:
        print_log(note, logger='current', level=logging.WARNING)
    if path:
        cfg.load_from = path


def main(argv=None):
    args = parse_args(argv)
    cfg, scope = build_cfg(args)

    # one line, before minutes of model building, when the dataset is not where cfg says
    splits = ('train', 'val') if cfg.get('val_cfg', None) is not None else ('train', )
    check_data_or_exit(cfg, splits, content=not args.skip_data_check, images=args.check_images)
    check_pretrained_or_exit(cfg)
    check_work_dir_or_exit(cfg.work_dir, 'train')
    select_resume_checkpoint(cfg)
    load_from = cfg.get('load_from', None)
    if load_from:
        check_checkpoint_file_or_exit(load_from, 'train')
    model = check_model_cfg_or_exit(cfg, scope, 'train')
    # mmengine loads with strict=False: a wrong file would only warn (after the config dump)
    purpose = 'test' if cfg.get('resume') else 'load_from'
    checked = model is not None and bool(load_from) and osp.isfile(load_from)
    if checked:
        check_checkpoint_or_exit(model, load_from, purpose, 'train')
    del model

    with exit_on_registry_error('train'):
        runner = build_runner(cfg, scope)
        if load_from and osp.isfile(load_from) and not checked:  # distributed: built now
            check_checkpoint_or_exit(runner.model, load_from, purpose, 'train')
        train(runner)
    return runner


def train(runner):
    """``runner.train()``; when it raises after an iteration completed, that iteration is saved
    (resumable exactly) and the process ends with the traceback, then one line saying where it
    stopped, why, and which checkpoint holds the work."""
    try:
        runner.train()
    except CheckpointWriteError as exc:
        raise SystemExit(f'tools/train.py: {exc}') from None
    except (Exception, KeyboardInterrupt) as exc:
        line = save_on_exception(runner, exc)
        if line is None:
            raise
        traceback.print_exc()
        raise SystemExit(line) from None


if __name__ == '__main__':
    run_and_close(main, sys.argv[1:])
