#!/usr/bin/env python
"""Loss and metric curves of one or more runs from mmengine's ``vis_data/scalars.json``.

Each argument is a work_dir (its newest ``<timestamp>/vis_data/scalars.json`` is used), a run's
log folder, or a ``scalars.json`` file. Training records (those with a ``loss``) give the loss
curves against the iteration; validation records give the metric curves against their logged
step (the epoch for epoch-based loops, the iteration for iteration-based ones). One PNG, losses
left, metrics right, a legend entry per run and key.

    python tools/analysis/analyze_logs.py work_dirs/nat_maskrcnn work_dirs/biformer_maskrcnn
    python tools/analysis/analyze_logs.py work_dirs/demo --keys loss loss_mask --out curves.png
    python tools/analysis/analyze_logs.py work_dirs/a work_dirs/b --legend NAT BiFormer \\
        --metrics coco/bbox_mAP coco/segm_mAP
"""
import argparse
import glob
import json
import os.path as osp

# The headline metric of each stock evaluator; other metrics are plotted when asked for.
HEADLINE_METRICS = ('bbox_mAP', 'segm_mAP', 'mIoU', 'mAcc', 'aAcc', 'top1')
NOT_METRICS = {'data_time', 'time', 'step', 'iter', 'epoch', 'memory'}


def find_scalars(path: str) -> str:
    """The ``scalars.json`` of a work_dir (newest run), a log folder, or the file itself."""
    if osp.isfile(path):
        return path
    for pattern in ('vis_data/scalars.json', '*/vis_data/scalars.json'):
        found = sorted(glob.glob(osp.join(path, pattern)))
        if found:
            return found[-1]  # timestamped folders sort chronologically
    raise FileNotFoundError(f'no vis_data/scalars.json under {path!r} (give a work_dir, a '
                            'run folder or the json file)')


def load_scalars(path: str) -> tuple:
    """(train records, val records) of a json-lines scalars file."""
    train, val = [], []
    with open(find_scalars(path)) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                (train if 'loss' in record else val).append(record)
    return train, val


def default_metrics(val: list) -> list:
    keys = sorted({k for r in val for k in r if k not in NOT_METRICS})
    headline = [k for k in keys if k.rsplit('/', 1)[-1] in HEADLINE_METRICS]
    return headline or keys


def plot_curves(runs, out_file, keys=None, metrics=None, legend=None, title=None):
    """Plot the runs' losses (``keys``; default every ``loss*``) and metrics to ``out_file``.

    Args:
        runs (list[str]): work_dirs, run folders or scalars.json files.
        out_file (str): PNG path.
        keys (list[str], optional): training scalars. Default: ``loss`` and every ``loss_*``.
        metrics (list[str], optional): validation scalars. Default: the headline metrics.
        legend (list[str], optional): one name per run. Default: the work_dir names.
        title (str, optional): figure title.

    Returns:
        str | None: ``out_file``, or None when no run has a training record.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    if legend is not None and len(legend) != len(runs):
        raise ValueError(f'--legend needs one name per run ({len(runs)}), got {legend}')
    names = legend or [osp.basename(osp.normpath(r)) for r in runs]
    loaded = [load_scalars(r) for r in runs]
    if not any(train for train, _ in loaded):
        return None
    with_metrics = any(val for _, val in loaded)
    fig, axes = plt.subplots(1, 2 if with_metrics else 1, figsize=(13 if with_metrics else 8, 5),
                             dpi=100, squeeze=False)
    loss_ax = axes[0, 0]
    # colour = scalar, line style = run: runs stay apart however many keys there are
    colours, cycle = {}, plt.rcParams['axes.prop_cycle'].by_key()['color']

    def style(run_index, key):
        colour = colours.setdefault(key, cycle[len(colours) % len(cycle)])
        return dict(color=colour, linestyle=('-', '--', ':', '-.')[run_index % 4])

    for run_index, (name, (train, val)) in enumerate(zip(names, loaded)):
        run_keys = keys or ['loss'] + sorted({k for r in train for k in r
                                              if k.startswith('loss_')})
        for k in run_keys:
            pts = [(r['step'], r[k]) for r in train if k in r]
            if pts:
                loss_ax.plot(*zip(*pts), label=f'{name}: {k}',
                             linewidth=2.0 if k == 'loss' else 1.0, **style(run_index, k))
        if with_metrics:
            for k in metrics or default_metrics(val):
                pts = [(r['step'], r[k]) for r in val if k in r]
                if pts:
                    axes[0, 1].plot(*zip(*pts), marker='o', label=f'{name}: {k}',
                                    **style(run_index, k))
    loss_ax.set_xlabel('iteration')
    loss_ax.set_ylabel('loss (mean over the log interval)')
    if with_metrics:
        axes[0, 1].set_xlabel('validation step (epoch or iteration, as logged)')
        axes[0, 1].set_ylabel('metric')
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_file)
    plt.close(fig)
    return out_file


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('runs', nargs='+', help='work_dirs, run folders or scalars.json files')
    parser.add_argument('--keys', nargs='+', help='training scalars (default: loss, loss_*)')
    parser.add_argument('--metrics', nargs='+', help='validation scalars (default: headline)')
    parser.add_argument('--legend', nargs='+', help='one name per run')
    parser.add_argument('--title')
    parser.add_argument('--out', default='curves.png', help='PNG file. Default: curves.png')
    args = parser.parse_args(argv)
    out = plot_curves(args.runs, args.out, args.keys, args.metrics, args.legend, args.title)
    print(out if out else 'no training records found: nothing plotted')
    return out


if __name__ == '__main__':
    main()
