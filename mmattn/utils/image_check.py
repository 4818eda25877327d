"""The optional deep pre-flight (``--check-images``): decode every image of the dataset.

The content check of :mod:`mmattn.utils.data_check` lists folders and reads annotations but
decodes no image (a COCO train set is 118k files), so a truncated or damaged image is found only
when training reaches it: ``failed to load image`` at some iteration, hours in. With
``--check-images`` ``tools/train.py`` / ``tools/test.py`` decode every image the run reads the
way mmcv's ``LoadImageFromFile`` does (``mmcv.imfrombytes`` with the pipeline's
``imdecode_backend``, cv2 by default), in worker processes with a progress line (the pool of
:func:`mmattn.utils.label_check.scan_files`), and stop with one line naming the files that
would fail.
"""
import json
import os.path as osp
from typing import List, Sequence

from .data_check import _dataset_class_attr, _first, _get, _join, _listing, split_datasets

_PARALLEL_FROM = 64  # images; fewer are decoded in this process
_PROGRESS_FROM = 200  # images; more get a progress line


def _decode_backend(dataset):
    """``imdecode_backend`` of the dataset pipeline's image loading step (cv2 by default)."""
    for step in _get(dataset, 'pipeline') or []:
        if str(_get(step, 'type', '')).endswith('LoadImageFromFile'):
            return _get(step, 'imdecode_backend') or 'cv2'
    return 'cv2'


def _coco_images(dataset):
    data_root = _get(dataset, 'data_root')
    ann_file = _join(data_root, _get(dataset, 'ann_file'))
    img_dir = _join(data_root, _get(_get(dataset, 'data_prefix') or {}, 'img', '')) or \
        str(data_root or '')
    with open(ann_file) as f:
        images = json.load(f).get('images') or []
    return [osp.join(img_dir, im.get('file_name', '')) for im in images]


def _folder_images(dataset):
    data_root = _get(dataset, 'data_root')
    prefix = _get(dataset, 'data_prefix') or {}
    img_dir = _join(data_root, _get(prefix, 'img_path', '')) or str(data_root or '')
    suffix = _get(dataset, 'img_suffix') or _dataset_class_attr(dataset, 'img_suffix') or '.jpg'
    return [osp.join(img_dir, p) for p in sorted(_listing(img_dir)) if p.endswith(suffix)]


def dataset_images(cfg, splits: Sequence[str] = ('train', 'val')):
    """``[(image path, imdecode backend)]`` of every image the given phases read (COCO json
    layouts and folder layouts such as ADE20K), each once."""
    found = {}
    for _, dataset in split_datasets(cfg, splits):
        ann_file = str(_get(dataset, 'ann_file') or '')
        prefix = _get(dataset, 'data_prefix') or {}
        if ann_file.endswith('.json'):
            paths = _coco_images(dataset)
        elif isinstance(prefix, dict) and 'img_path' in prefix and not ann_file:
            paths = _folder_images(dataset)
        else:
            continue
        backend = _decode_backend(dataset)
        for path in paths:
            found.setdefault(path, backend)
    return list(found.items())


def decode_problem(item):
    """``(kind, detail)`` when the image cannot be read or decoded as training would, else
    None (``item``: ``(path, backend)``)."""
    path, backend = item
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        return 'unreadable', exc.strerror or type(exc).__name__
    if not data:
        return 'empty', '0 bytes'
    import mmcv
    try:
        image = mmcv.imfrombytes(data, flag='color', backend=backend)
    except Exception as exc:  # noqa: BLE001 - any decoder error is this file's problem
        text = str(exc).strip().splitlines()
        return 'undecodable', text[0][:80] if text else type(exc).__name__
    if image is None:
        return 'undecodable', f'{len(data)} bytes, truncated or not an image'
    return None


def image_problems(cfg, splits: Sequence[str] = ('train', 'val'), workers=None) -> List[str]:
    """One line per kind of problem (unreadable, empty, undecodable) with the count and the
    first files; empty when every image decodes."""
    from .label_check import scan_files
    items = dataset_images(cfg, splits)
    found = scan_files(items, decode_problem, 'images', workers=workers,
                       parallel_from=_PARALLEL_FROM, progress_from=_PROGRESS_FROM)
    texts = {'unreadable': 'cannot be read', 'empty': 'are empty files',
             'undecodable': 'cannot be decoded (LoadImageFromFile would fail on them)'}
    problems = []
    for kind, text in texts.items():
        rows = [(items[i][0], detail) for i, k, detail in found if k == kind]
        if rows:
            problems.append(f'{len(rows)} of {len(items)} images {text}: '
                            + _first(f'{path} ({detail})' for path, detail in rows))
    return problems
