"""Fail early, in one line, when the dataset a config points to is not on disk.

Without this check a missing dataset surfaces deep inside the Runner (a pycocotools
``FileNotFoundError`` while building the dataloader, or an empty ADE20K folder that only fails
at the first iteration), after tens of seconds of imports and model building. ``tools/train.py``
and ``tools/test.py`` call :func:`check_data_or_exit` right after loading the config.

Only the standard dataset layouts are inspected: ``data_root`` joined (as mmengine's
``BaseDataset`` does) with ``ann_file`` and every ``data_prefix`` entry, through dataset
wrappers (``dataset=`` / ``datasets=``), plus the evaluators' ``ann_file`` (CocoMetric).
"""
import os.path as osp
import sys
from typing import Iterable, List, Sequence

SYNTHETIC_HINT = ('for the synthetic demo data run `make demo` or '
                  '`python tools/make_synthetic.py --out data/synthetic`')

# which config keys each phase reads
_SPLIT_KEYS = {
    'train': ('train_dataloader', None),
    'val': ('val_dataloader', 'val_evaluator'),
    'test': ('test_dataloader', 'test_evaluator'),
}


def _get(obj, key, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _join(data_root, path):
    if not path:
        return None
    path = str(path)
    if osp.isabs(path) or '://' in path or not data_root:
        return path
    return osp.join(str(data_root), path)


def _dataset_paths(dataset) -> List[str]:
    """Paths a dataset config reads, recursing into wrapper datasets."""
    if dataset is None:
        return []
    paths = []
    inner = _get(dataset, 'dataset')
    if inner is not None:
        paths += _dataset_paths(inner)
    inner_list = _get(dataset, 'datasets')
    if inner_list:
        for d in inner_list:
            paths += _dataset_paths(d)
    if inner is not None or inner_list:
        return paths
    data_root = _get(dataset, 'data_root')
    ann_file = _join(data_root, _get(dataset, 'ann_file'))
    if ann_file:
        paths.append(ann_file)
    prefix = _get(dataset, 'data_prefix') or {}
    if isinstance(prefix, dict):
        for value in prefix.values():
            joined = _join(data_root, value)
            if joined:
                paths.append(joined)
    elif data_root:
        paths.append(str(data_root))
    if not paths and data_root:
        paths.append(str(data_root))
    return paths


def _evaluator_paths(evaluator) -> List[str]:
    if evaluator is None:
        return []
    if isinstance(evaluator, (list, tuple)):
        return [p for e in evaluator for p in _evaluator_paths(e)]
    metrics = _get(evaluator, 'metrics')
    if metrics is not None:
        return _evaluator_paths(metrics)
    ann_file = _get(evaluator, 'ann_file')
    return [str(ann_file)] if ann_file and '://' not in str(ann_file) else []


def required_data_paths(cfg, splits: Sequence[str] = ('train', 'val')) -> List[str]:
    """The dataset files and folders ``cfg`` reads for the given phases, in config order."""
    paths = []
    for split in splits:
        loader_key, evaluator_key = _SPLIT_KEYS[split]
        loader = _get(cfg, loader_key)
        if split in ('val', 'test') and loader is not None:
            # no loop of that kind -> the loader is never built
            loop_key = f'{split}_cfg'
            if _get(cfg, loop_key, 'absent') is None:
                continue
        paths += _dataset_paths(_get(loader, 'dataset'))
        if evaluator_key:
            paths += _evaluator_paths(_get(cfg, evaluator_key))
    seen, unique = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def find_missing_data(cfg, splits: Sequence[str] = ('train', 'val')) -> List[str]:
    """Subset of :func:`required_data_paths` that does not exist (relative to the cwd)."""
    return [p for p in required_data_paths(cfg, splits) if not osp.exists(p)]


def missing_data_message(missing: Iterable[str]) -> str:
    """The one-line error printed for missing data."""
    missing = list(missing)
    more = f', {len(missing) - 1} more path(s) missing' if len(missing) > 1 else ''
    where = f'expected {missing[0]} ({osp.abspath(missing[0])}{more})'
    if 'synthetic' in missing[0]:
        hint = SYNTHETIC_HINT
    else:
        hint = ('put the dataset there or set data_root with --cfg-options; '
                f'{SYNTHETIC_HINT} and use a configs/demo config')
    return f'mmattn: dataset not found: {where}; {hint}'


def check_data_or_exit(cfg, splits: Sequence[str] = ('train', 'val'), exit_code: int = 2,
                       content: bool = True):
    """Print one line to stderr and exit with ``exit_code`` when the data is missing or, with
    ``content``, unusable (:func:`data_content_problems`)."""
    missing = find_missing_data(cfg, splits)
    if missing:
        print(missing_data_message(missing), file=sys.stderr, flush=True)
        sys.exit(exit_code)
    if content:
        problems = data_content_problems(cfg, splits)
        if problems:
            print(f'mmattn: dataset check failed: {problems[0]}'
                  + (f' (and {len(problems) - 1} more problem(s))' if len(problems) > 1 else '')
                  + '; --skip-data-check to train anyway', file=sys.stderr, flush=True)
            sys.exit(exit_code)


def data_content_problems(cfg, splits: Sequence[str] = ('train', 'val')) -> List[str]:
    """One line per unusable dataset (filled below)."""
    return []


def missing_pretrained(cfg) -> List[str]:
    """Local ``init_cfg=dict(type='Pretrained')`` checkpoints of the model that do not exist."""
    missing = []

    def visit(node):
        if isinstance(node, dict):
            init = node.get('init_cfg')
            if isinstance(init, dict) and init.get('type') == 'Pretrained':
                ckpt = str(init.get('checkpoint', ''))
                if ckpt and '://' not in ckpt and not osp.exists(ckpt):
                    missing.append(ckpt)
            for value in node.values():
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)

    visit(_get(cfg, 'model'))
    return missing


def check_pretrained_or_exit(cfg, exit_code: int = 2):
    """One line naming a missing pretrained file and how to make it (train only reads it)."""
    missing = missing_pretrained(cfg)
    if missing and not _get(cfg, 'load_from') and not _get(cfg, 'resume'):
        family = _get(_get(_get(cfg, 'model'), 'backbone') or {}, 'type') or 'FAMILY'
        print(f'mmattn: pretrained checkpoint not found: {missing[0]} ({osp.abspath(missing[0])}); '
              f'convert the official ImageNet weights with `python tools/convert_ckpt.py '
              f'{str(family).split(".")[-1].lower()} OFFICIAL.pth {missing[0]}`, or train from '
              "scratch with --cfg-options model.backbone.init_cfg=None",
              file=sys.stderr, flush=True)
        sys.exit(exit_code)
