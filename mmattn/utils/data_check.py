"""Fail early, in one line, when the dataset a config points to is not on disk.

Without this check a missing dataset surfaces deep inside the Runner (a pycocotools
``FileNotFoundError`` while building the dataloader, or an empty ADE20K folder that only fails
at the first iteration), after tens of seconds of imports and model building. ``tools/train.py``
and ``tools/test.py`` call :func:`check_data_or_exit` right after loading the config.

Only the standard dataset layouts are inspected: ``data_root`` joined (as mmengine's
``BaseDataset`` does) with ``ann_file`` and every ``data_prefix`` entry, through dataset
wrappers (``dataset=`` / ``datasets=``), plus the evaluators' ``ann_file`` (CocoMetric).

Then the content (:func:`data_content_problems`, skipped with ``--skip-data-check``): for COCO
layouts the json is read once and the image folder listed once (no image is opened); for ADE20K
layouts both folders are listed, then every segmentation map is opened (mode, size against its
image's header, label values against the heads' ``num_classes`` / ``ignore_index`` after
``reduce_zero_label`` and the label map: :mod:`mmattn.utils.label_check`, in worker processes on
large sets). Missing files, empty or unmatched annotations, all-degenerate boxes and unusable
segmentation maps stop the tool with the count and the first offending entries.
"""
import json
import os
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
                       content: bool = True, images: bool = False):
    """Print one line to stderr and exit with ``exit_code`` when the data is missing or, with
    ``content``, unusable (:func:`data_content_problems`); with ``images`` (``--check-images``)
    every image is decoded too (:func:`mmattn.utils.image_check.image_problems`)."""
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
    if images:
        from .image_check import image_problems
        problems = image_problems(cfg, splits)
        if problems:
            print(f'mmattn: image check failed: {problems[0]}'
                  + (f' (and {len(problems) - 1} more problem(s))' if len(problems) > 1 else ''),
                  file=sys.stderr, flush=True)
            sys.exit(exit_code)


# ---------------------------------------------------------------- content (COCO / ADE20K)

_SHOWN = 3  # offending entries named per problem


def _first(items):
    items = list(items)
    more = f', ... (+{len(items) - _SHOWN} more)' if len(items) > _SHOWN else ''
    return ', '.join(str(i) for i in items[:_SHOWN]) + more


def _leaf_datasets(dataset):
    """The dataset configs below wrappers (``dataset=`` / ``datasets=``)."""
    if dataset is None:
        return []
    inner, inner_list = _get(dataset, 'dataset'), _get(dataset, 'datasets')
    if inner is None and not inner_list:
        return [dataset]
    return _leaf_datasets(inner) + [d for sub in (inner_list or []) for d in _leaf_datasets(sub)]


def _dataset_class(dataset):
    """The dataset type's class from the mmdet or mmseg registry, or None."""
    dtype = str(_get(dataset, 'type', '') or '').split('.')[-1]
    for module in ('mmdet.registry', 'mmseg.registry'):
        try:
            import importlib
            cls = importlib.import_module(module).DATASETS.get(dtype)
        except Exception:  # noqa: BLE001 - a codebase that is absent or fails to import
            cls = None
        if cls is not None:
            return cls
    return None


def _dataset_class_attr(dataset, name, default=None):
    """A class attribute (``METAINFO``, suffixes) of the dataset type, from the registry of the
    config's scope; ``default`` when it cannot be looked up."""
    cls = _dataset_class(dataset)
    return default if cls is None else getattr(cls, name, default)


def _listing(folder):
    """Relative paths of the files below ``folder`` (one directory walk, no file opened)."""
    found = set()
    for root, _, files in os.walk(folder):
        rel = osp.relpath(root, folder)
        for name in files:
            found.add(name if rel == '.' else osp.join(rel, name))
    return found


def _valid_box(ann, image):
    """mmdet ``CocoDataset.parse_data_info``'s test: boxes it keeps for training."""
    if ann.get('ignore', False) or ann.get('iscrowd', 0):
        return False
    bbox = ann.get('bbox') or []
    if len(bbox) != 4:
        return False
    x1, y1, w, h = bbox
    img_w, img_h = image.get('width', float('inf')), image.get('height', float('inf'))
    inter_w = max(0, min(x1 + w, img_w) - max(x1, 0))
    inter_h = max(0, min(y1 + h, img_h) - max(y1, 0))
    return inter_w * inter_h > 0 and ann.get('area', w * h) > 0 and w >= 1 and h >= 1


def _coco_problems(dataset, split):
    data_root = _get(dataset, 'data_root')
    ann_file = _join(data_root, _get(dataset, 'ann_file'))
    prefix = _get(dataset, 'data_prefix') or {}
    img_dir = _join(data_root, _get(prefix, 'img', '')) or str(data_root or '')
    with open(ann_file) as f:
        coco = json.load(f)
    images = coco.get('images') or []
    annotations = coco.get('annotations')
    categories = coco.get('categories') or []
    problems = []
    if not images:
        return [f'{ann_file} lists no images']

    metainfo = _get(dataset, 'metainfo') or _dataset_class_attr(dataset, 'METAINFO', {}) or {}
    classes = list(_get(metainfo, 'classes') or [])
    names = [c.get('name') for c in categories]
    cat_ids = {c.get('id') for c in categories if not classes or c.get('name') in classes}
    if classes and not cat_ids:
        problems.append(f'none of the {len(classes)} class names of the config '
                        f'({_first(classes)}) is a category of {ann_file} (its categories: '
                        f'{_first(names) or "none"})')

    if split == 'train' and not problems:
        if not annotations:
            problems.append(f'the "annotations" list of {ann_file} is empty: nothing to train on')
        else:
            by_id = {im.get('id'): im for im in images}
            ours = [a for a in annotations if a.get('category_id') in cat_ids]
            if not ours:
                problems.append(f'no annotation of {ann_file} has a category of the config '
                                f'({_first(classes)})')
            elif not any(_valid_box(a, by_id.get(a.get('image_id'), {})) for a in ours):
                problems.append(
                    f'all {len(ours)} boxes of {ann_file} are degenerate (width or height < 1 '
                    'px, zero area or outside the image): training would see background only; '
                    'first: ' + _first(f'id {a.get("id")} bbox {a.get("bbox")}' for a in ours))

    files = _listing(img_dir) if osp.isdir(img_dir) else set()
    missing = [im.get('file_name') for im in images if im.get('file_name') not in files]
    if missing:
        problems.append(f'{len(missing)} of {len(images)} images listed in {ann_file} are '
                        f'missing under {img_dir}: {_first(missing)}')
    return problems


def _seg_problems(cfg, dataset):
    data_root = _get(dataset, 'data_root')
    prefix = _get(dataset, 'data_prefix') or {}
    img_dir = _join(data_root, _get(prefix, 'img_path', '')) or str(data_root or '')
    seg_dir = _join(data_root, _get(prefix, 'seg_map_path', ''))
    img_suffix = _get(dataset, 'img_suffix') or _dataset_class_attr(dataset, 'img_suffix') \
        or '.jpg'
    seg_suffix = _get(dataset, 'seg_map_suffix') or \
        _dataset_class_attr(dataset, 'seg_map_suffix') or '.png'
    if _get(dataset, 'ann_file'):  # an explicit split file: mmseg reads names from it
        return []
    images = sorted(p for p in _listing(img_dir) if p.endswith(img_suffix))
    if not images:
        return [f'no *{img_suffix} image under {img_dir}']
    if not seg_dir:
        return []
    maps = _listing(seg_dir) if osp.isdir(seg_dir) else set()
    missing = [p[:-len(img_suffix)] + seg_suffix for p in images
               if p[:-len(img_suffix)] + seg_suffix not in maps]
    if missing:
        return [f'{len(missing)} of {len(images)} images under {img_dir} have no segmentation '
                f'map under {seg_dir}: {_first(missing)}']
    from .label_check import label_problems, label_rules
    rules = label_rules(cfg, dataset, _dataset_class(dataset))
    names = [p[:-len(img_suffix)] + seg_suffix for p in images]
    pairs = [(osp.join(img_dir, p), osp.join(seg_dir, n)) for p, n in zip(images, names)]
    return label_problems(pairs, names, seg_dir, rules, shown=_SHOWN)


def data_content_problems(cfg, splits: Sequence[str] = ('train', 'val')) -> List[str]:
    """What would make the first iterations fail or train on nothing, one line each.

    COCO layouts (``ann_file`` ``*.json``): image files listed in the json but absent (one
    directory listing, no image decoded), class names of the config matching no category, and
    for training an empty ``annotations`` list or boxes that are all degenerate (mmdet drops
    boxes narrower or lower than 1 px, of zero area or outside the image). ADE20K / mmseg
    folder layouts (``data_prefix.seg_map_path``): images without their segmentation map, then
    maps that cannot be decoded, have more than one channel, differ in size from their image or
    hold a value that would be neither a class index nor ``ignore_index`` after
    ``reduce_zero_label`` and the label map.
    """
    problems = []
    for split, dataset in split_datasets(cfg, splits):
        ann_file = str(_get(dataset, 'ann_file') or '')
        prefix = _get(dataset, 'data_prefix') or {}
        if ann_file.endswith('.json'):
            problems += _coco_problems(dataset, split)
        elif isinstance(prefix, dict) and 'seg_map_path' in prefix:
            problems += _seg_problems(cfg, dataset)
    return list(dict.fromkeys(problems))


def split_datasets(cfg, splits: Sequence[str]):
    """``(split, leaf dataset config)`` of every phase the run has (a val / test phase whose
    loop is None is skipped), below the dataset wrappers."""
    for split in splits:
        loader_key, _ = _SPLIT_KEYS[split]
        if split in ('val', 'test') and _get(cfg, f'{split}_cfg', 'absent') is None:
            continue
        for dataset in _leaf_datasets(_get(_get(cfg, loader_key), 'dataset')):
            yield split, dataset


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
        backbone = str(_get(_get(_get(cfg, 'model'), 'backbone') or {}, 'type') or 'FAMILY')
        family = converter_family(backbone)
        if family:
            how = (f'convert the official ImageNet weights with `python tools/convert_ckpt.py '
                   f'{family} OFFICIAL.pth {missing[0]}`')
        else:
            how = (f'{backbone.split(".")[-1]} has no released weights and no converter: put a '
                   'state dict of your own ImageNet model (mmattn keys) there')
        print(f'mmattn: pretrained checkpoint not found: {missing[0]} ({osp.abspath(missing[0])}); '
              f'{how}, or train from scratch with --cfg-options model.backbone.init_cfg=None',
              file=sys.stderr, flush=True)
        sys.exit(exit_code)


def converter_family(backbone_type):
    """The ``tools/convert_ckpt.py`` family of a backbone type (``'SlideSwin'`` ->
    ``'slide_swin'``), or None when it has no converter (e.g. ``SlidePVT``)."""
    from mmattn.converters import CONVERTERS
    from mmattn.registry import MODELS
    cls = MODELS.get(backbone_type.split('.')[-1])
    family = getattr(cls, 'family', None)
    return family if family in CONVERTERS else None
