"""Test (and evaluate) a checkpoint with an mmattn (or any mmdet / mmseg) config.

Upstream-compatible front end of mmdet's and mmseg's ``tools/test.py``; the semantics follow the
config's ``default_scope``: ``mmdet`` -> ``--out`` dumps predictions to a ``.pkl``
(``DumpDetResults``) and ``--tta`` falls back to a flip TTA when the config has none; ``mmseg`` ->
``--out`` is a directory for the predicted label maps and ``--tta`` uses the config's
``tta_model`` / ``tta_pipeline``. ``import mmattn`` comes first (backbones + checkpoint
allow-list), and the dataset paths are checked before the Runner is built.

    python tools/test.py configs/demo/biformer_maskrcnn_synthetic.py work_dirs/demo/det/epoch_12.pth
    python tools/test.py configs/seg/biformer_upernet.py iter_160000.pth --show-dir vis
"""
import argparse
import os.path as osp
import sys
import warnings
from copy import deepcopy

# mmengine 0.10.7 imports pkg_resources (gone in setuptools 82, so <82 is pinned); its
# deprecation notice is noise for users of these tools
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

import mmattn  # noqa: F401,E402  (first: registrations + checkpoint allow-list)
from mmattn.utils import check_data_or_exit  # noqa: E402
from mmattn.converters.check import check_checkpoint_or_exit  # noqa: E402
from mmattn.utils.tool_cli import (add_common_args, exit_on_registry_error,  # noqa: E402
                                   parse_tool_args, run_and_close)
from mmattn.utils.tool_setup import (build_runner, check_checkpoint_file_or_exit,  # noqa: E402
                                     check_model_cfg_or_exit, check_work_dir_or_exit,
                                     load_tool_config)

from mmengine.config import ConfigDict  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a detector or segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out', type=str,
        help='mmdet: dump predictions to a .pkl file; mmseg: directory for the predicted '
        'label maps (offline evaluation)')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved (relative paths go under '
        'work_dir/<timestamp>/)')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    add_common_args(parser)
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    return parse_tool_args(parser, argv)


def trigger_visualization_hook(cfg, args):
    default_hooks = cfg.default_hooks
    if 'visualization' not in default_hooks:
        raise RuntimeError('VisualizationHook must be included in default_hooks, e.g. '
                           'visualization=dict(type="DetVisualizationHook")')
    hook = default_hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if cfg.default_scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir  # mmdet's hook option
        else:
            cfg.visualizer['save_dir'] = args.show_dir  # as mmseg's tools/test.py
    return cfg


def apply_det_tta(cfg):
    if 'tta_model' not in cfg:
        warnings.warn('Cannot find ``tta_model`` in config, we will set it as default.')
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('Cannot find ``tta_pipeline`` in config, we will set it as default.')
        test_data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in test_data_cfg:
            test_data_cfg = test_data_cfg['dataset']
        cfg.tta_pipeline = deepcopy(test_data_cfg.pipeline)
        flip_tta = dict(
            type='TestTimeAug',
            transforms=[
                [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                [dict(type='PackDetInputs',
                      meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                 'scale_factor', 'flip', 'flip_direction'))],
            ])
        cfg.tta_pipeline[-1] = flip_tta
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def apply_seg_tta(cfg):
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise SystemExit('tools/test.py: --tta needs tta_model and tta_pipeline in an mmseg '
                         'config (the stock ADE20K bases define both)')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def build_cfg(args):
    cfg, scope = load_tool_config(args, 'test')
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        (apply_det_tta if scope == 'mmdet' else apply_seg_tta)(cfg)
    if args.out is not None and scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    if args.out is not None and scope == 'mmdet' and \
            not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit('tools/test.py: --out must be a .pkl file for mmdet configs')
    return cfg, scope


def main(argv=None):
    args = parse_args(argv)
    cfg, scope = build_cfg(args)
    check_checkpoint_file_or_exit(args.checkpoint, 'test')  # missing, empty, truncated
    check_work_dir_or_exit(cfg.work_dir, 'test')
    check_data_or_exit(cfg, ('test', ), content=not args.skip_data_check,
                       images=args.check_images)
    model = check_model_cfg_or_exit(cfg, scope, 'test')
    # mmengine loads it with strict=False, i.e. silently: names and shapes compared first
    checked = model is not None and osp.isfile(args.checkpoint)
    if checked:
        check_checkpoint_or_exit(model, args.checkpoint, 'test', 'test')
    del model

    with exit_on_registry_error('test'):
        runner = build_runner(cfg, scope)
        if osp.isfile(args.checkpoint) and not checked:  # distributed: built now
            check_checkpoint_or_exit(runner.model, args.checkpoint, 'test', 'test')

        if args.out is not None and scope == 'mmdet':
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))

        return runner.test()


if __name__ == '__main__':
    run_and_close(main, sys.argv[1:])
