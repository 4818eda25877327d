"""End-to-end CPU demo: synthetic data -> train a tiny BiFormer -> evaluate -> pictures.

``make demo`` runs ``python tools/demo.py --task det --work-dir work_dirs/demo`` (Mask R-CNN on the
synthetic COCO shapes, CocoMetric bbox + segm); ``make demo-seg`` runs ``--task seg`` (UPerNet on
the synthetic ADE20K scenes, IoUMetric); ``make demo-plug`` runs ``--task plug`` (R-50 RetinaNet
with neighborhood-attention plugins, CocoMetric bbox). Steps:

1. generate the synthetic dataset with ``tools/make_synthetic.py`` if it is not there yet;
2. train the demo config through the stock mmengine Runner (validation at the end);
3. write prediction images (``DetLocalVisualizer`` / ``SegLocalVisualizer``, ground truth left,
   prediction right) and the loss / metric curves from ``vis_data/scalars.json``
   (``tools/analysis/analyze_logs.py``);
4. print the metrics and where every file is.
"""
import argparse
import numbers
import os
import os.path as osp
import sys
import time
import warnings

# mmengine 0.10.7 imports pkg_resources (gone in setuptools 82, so <82 is pinned); its
# deprecation notice is noise for users of these tools
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

import mmattn  # noqa: F401,E402  (first: registrations + checkpoint allow-list)
from mmattn.utils import find_missing_data  # noqa: E402
from mmattn.utils.tool_cli import load_tool  # noqa: E402

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
analyze_logs = load_tool('analysis/analyze_logs', osp.join(ROOT, 'tools'))
make_synthetic = load_tool('make_synthetic', osp.join(ROOT, 'tools'))

TASKS = {
    'det': dict(config='configs/demo/biformer_maskrcnn_synthetic.py', dataset='coco',
                headline=('coco/bbox_mAP', 'coco/segm_mAP')),
    'seg': dict(config='configs/demo/biformer_upernet_synthetic.py', dataset='ade20k',
                headline=('mIoU', 'aAcc')),
    # a plug-in attention in a stock host: R-50 RetinaNet with NeighborhoodAttention2d plugins
    'plug': dict(config='configs/demo/r50-na_retinanet_synthetic.py', dataset='coco',
                 headline=('coco/bbox_mAP', 'coco/bbox_mAP_50')),
}


def _fmt(value):
    return f'{float(value):.4g}' if isinstance(value, numbers.Real) else str(value)


def say(msg):
    print(f'[demo] {msg}', flush=True)


class _KeepMetrics(Hook):
    """Remember the metrics of the last validation run."""
    priority = 'LOWEST'

    def __init__(self):
        self.metrics = {}

    def after_val_epoch(self, runner, metrics=None):
        if metrics:
            self.metrics = dict(metrics)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', choices=sorted(TASKS), default='det',
                        help='det: Mask R-CNN + CocoMetric; seg: UPerNet + IoUMetric; plug: R-50 '
                        '+ neighborhood-attention plugins, RetinaNet + CocoMetric')
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='output folder; the task writes into <work-dir>/<task>')
    parser.add_argument('--config', help='demo config (default: the task\'s configs/demo file)')
    parser.add_argument('--data-root', default=make_synthetic.DEFAULT_OUT,
                        help='where the synthetic data lives / is generated (default: %(default)s)')
    parser.add_argument('--num-images', type=int, default=8,
                        help='validation images to draw predictions for (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='training seed (default: %(default)s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, as for tools/train.py')
    return parser.parse_args(argv)


def load_cfg(args, task):
    cfg = Config.fromfile(args.config or osp.join(ROOT, task['config']))
    data_dir = osp.join(args.data_root, task['dataset'])
    # point every dataset / evaluator of the config at --data-root
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key) is not None:
            cfg[key].dataset.data_root = data_dir
    for key in ('val_evaluator', 'test_evaluator'):
        ev = cfg.get(key)
        if ev is not None and ev.get('ann_file'):
            ev.ann_file = osp.join(data_dir, 'annotations', osp.basename(ev.ann_file))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = osp.join(args.work_dir, args.task)
    cfg.randomness = dict(seed=args.seed)
    cfg.launcher = 'none'
    return cfg


def ensure_data(args, task, cfg):
    missing = find_missing_data(cfg, ('train', 'val'))
    if not missing:
        say(f'1/4 synthetic data found under {osp.join(args.data_root, task["dataset"])}')
        return
    say(f'1/4 generating the synthetic {task["dataset"]} dataset under {args.data_root} '
        f'(tools/make_synthetic.py, {make_synthetic.DEFAULT_NUM_TRAIN} train / '
        f'{make_synthetic.DEFAULT_NUM_VAL} val images)')
    make_synthetic.make_synthetic(args.data_root, only=task['dataset'])
    still = find_missing_data(cfg, ('train', 'val'))
    if still:
        raise SystemExit(f'[demo] data still missing after generation: {still[0]}')


def draw_predictions(runner, out_dir, num_images, task_name):
    """Run the trained model on the first validation images and save GT | prediction PNGs."""
    import mmcv
    os.makedirs(out_dir, exist_ok=True)
    model = runner.model
    model.eval()
    visualizer = runner.visualizer
    dataset = runner.val_dataloader.dataset
    visualizer.dataset_meta = dataset.metainfo
    written = []
    with torch.no_grad():
        for data in runner.val_dataloader:
            outputs = model.test_step(data)
            for sample in outputs:
                img_path = sample.img_path
                image = mmcv.imread(img_path, channel_order='rgb')
                name = osp.splitext(osp.basename(img_path))[0]
                out_file = osp.join(out_dir, f'{name}.png')
                kwargs = dict(pred_score_thr=0.3) if TASKS[task_name]['dataset'] == 'coco' else {}
                visualizer.add_datasample(
                    name, image, data_sample=sample, draw_gt=True, draw_pred=True, show=False,
                    wait_time=0, out_file=out_file, **kwargs)
                written.append(out_file)
                if len(written) >= num_images:
                    return written
    return written


def main(argv=None):
    args = parse_args(argv)
    task = TASKS[args.task]
    t0 = time.time()
    cfg = load_cfg(args, task)
    ensure_data(args, task, cfg)

    from mmengine.runner import Runner
    say(f'2/4 training {osp.relpath(cfg.filename, ROOT) if cfg.filename else task["config"]} '
        f'on CPU ({torch.get_num_threads()} threads); logs and checkpoints in {cfg.work_dir}')
    runner = Runner.from_cfg(cfg)
    keeper = _KeepMetrics()
    runner.register_hook(keeper)
    t_train = time.time()
    runner.train()
    train_s = time.time() - t_train
    metrics = keeper.metrics
    if not metrics:  # no validation ran during training (e.g. overridden val_interval)
        say('3/4 evaluating')
        metrics = runner.val()
    else:
        say('3/4 evaluation done at the end of training')

    say('4/4 writing prediction images and the loss curve')
    pred_dir = osp.join(cfg.work_dir, 'predictions')
    images = draw_predictions(runner, pred_dir, args.num_images, args.task)
    scalars = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
    title = f'{osp.splitext(osp.basename(cfg.filename))[0]}: training losses and metrics'
    curve = analyze_logs.plot_curves(
        [scalars], osp.join(cfg.work_dir, 'loss_curve.png'), legend=[task['dataset']],
        title=title) if osp.exists(scalars) else None

    total_s = time.time() - t0
    print('', flush=True)
    say(f'done in {total_s / 60:.1f} min (training + validation {train_s / 60:.1f} min)')
    say('metrics: ' + '  '.join(f'{k}={_fmt(v)}' for k, v in metrics.items()))
    head = '  '.join(f'{k}={_fmt(metrics[k])}' for k in task['headline'] if k in metrics)
    say(f'headline: {head}')
    say(f'prediction images ({len(images)}, ground truth | prediction): {pred_dir}')
    say(f'loss curve: {curve}' if curve else 'loss curve: not written (no scalars.json)')
    say(f'log: {osp.join(runner.log_dir, osp.basename(runner.log_dir) + ".log")}')
    ckpt_file = osp.join(cfg.work_dir, 'last_checkpoint')
    if osp.exists(ckpt_file):
        with open(ckpt_file) as f:
            ckpt = f.read().strip()
        say(f'checkpoint: {ckpt}')
    return metrics


if __name__ == '__main__':
    main(sys.argv[1:])
