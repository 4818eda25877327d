"""Segmentation maps checked before the first iteration: readable, one channel, the size of
their image, and no label value the loss cannot take.

mmseg's ``LoadAnnotations`` decodes a map with Pillow unchanged, casts it to uint8, then (with
``reduce_zero_label``) turns 0 into 255 and subtracts 1 from the rest, then applies the dataset's
``label_map`` (a class subset in ``metainfo``: the other ids become 255). A value that ends
neither below the head's ``num_classes`` nor at its ``ignore_index`` fails at the first
iteration (``IndexError: Target 199 is out of bounds``, after the whole config is logged); an RGB
map, or one of another size than its image, fails in the collate step
(``stack expects each tensor to be equal size``) without naming a file.

:func:`label_rules` reads those settings from the config; :func:`scan_label_maps` opens every
map (the header for mode and size, then ``Image.histogram`` of the decoded 8-bit pixels, or
``np.unique`` for 16/32-bit maps) and the header of its image, in worker processes with a
progress line on large sets.
"""
import inspect
import os
import sys
import time

import numpy as np

from .data_check import _get

_PARALLEL_FROM = 500  # maps; fewer are checked in this process
_PROGRESS_FROM = 2000  # maps; more get a progress line on stderr
_MAX_WORKERS = 8
_SHOWN_VALUES = 4  # offending values named per file


def _heads(model):
    """The decode / auxiliary head configs (a head may be a list, as in CascadeEncoderDecoder;
    a test-time-augmentation model holds the segmentor under ``module``)."""
    while _get(model, 'module') is not None and _get(model, 'decode_head') is None:
        model = _get(model, 'module')
    heads = []
    for key in ('decode_head', 'auxiliary_head'):
        head = _get(model, key)
        heads += list(head) if isinstance(head, (list, tuple)) else [head] if head else []
    return [h for h in heads if _get(h, 'num_classes') is not None]


def _ignore_index(head):
    value = _get(head, 'ignore_index')
    return 255 if value is None else value  # mmseg BaseDecodeHead's default


def label_rules(cfg, dataset, dataset_class):
    """What the label values of ``dataset`` go through and must end as.

    Args:
        cfg: the whole config (its ``model`` heads give ``num_classes`` / ``ignore_index``).
        dataset: the (leaf) dataset config.
        dataset_class: the dataset type (for the defaults of ``reduce_zero_label`` and the
            label map), or None.

    Returns:
        dict: ``reduce_zero_label``, ``label_map`` (dict or None), ``heads``
        (``[(num_classes, ignore_index)]``) and ``valid``: a bool array of 256, the raw uint8
        values that every head accepts.
    """
    reduce_zero_label = _get(dataset, 'reduce_zero_label')
    if reduce_zero_label is None and dataset_class is not None:
        try:
            param = inspect.signature(dataset_class.__init__).parameters.get('reduce_zero_label')
            reduce_zero_label = param.default if param is not None else False
        except (TypeError, ValueError):
            reduce_zero_label = False
    reduce_zero_label = bool(reduce_zero_label)

    label_map = None
    classes = _get(_get(dataset, 'metainfo'), 'classes')
    if classes and dataset_class is not None and hasattr(dataset_class, 'get_label_map'):
        try:
            label_map = dataset_class.get_label_map(list(classes))
        except Exception:  # noqa: BLE001 - mmseg raises its own error when it builds the set
            label_map = None

    heads = [(int(_get(h, 'num_classes')), int(_ignore_index(h)))
             for h in _heads(_get(cfg, 'model'))]
    if not heads:
        n = len(classes) if classes else len(_get(_get(dataset_class, 'METAINFO'), 'classes', ()))
        heads = [(n, 255)] if n else []

    raw = np.arange(256)
    value = raw.copy()
    if reduce_zero_label:  # as LoadAnnotations: 0 -> 255, v -> v - 1, 255 stays 255
        value = np.where(raw == 0, 255, raw - 1)
        value[value == 254] = 255
    if label_map:
        mapped = value.copy()
        for old, new in label_map.items():
            mapped[value == old] = new
        value = mapped
    valid = np.ones(256, dtype=bool)
    for num_classes, ignore_index in heads:
        valid &= (value < num_classes) | (value == ignore_index)
    return dict(reduce_zero_label=reduce_zero_label, label_map=label_map, heads=heads,
                valid=valid)


def describe_values(valid):
    """``'0-150, 255'``: the raw values a bool array of 256 allows, as ranges."""
    ranges, start = [], None
    for v in range(257):
        on = v < 256 and valid[v]
        if on and start is None:
            start = v
        elif not on and start is not None:
            ranges.append(f'{start}' if start == v - 1 else f'{start}-{v - 1}')
            start = None
    return ', '.join(ranges) or 'none'


_VALID = None  # the worker processes' copy of the valid raw values


def _init_worker(valid):
    global _VALID
    _VALID = valid


def _oriented_size(image):
    """(width, height) as decoded by mmcv's cv2 backend, which applies the EXIF orientation."""
    width, height = image.size
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block: the pixels decide
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def inspect_pair(pair):
    """``(kind, detail)`` of the first problem of one (image, map) pair, or None.

    ``kind``: ``'unreadable'``, ``'mode'``, ``'size'`` or ``'values'``."""
    from PIL import Image
    img_path, seg_path = pair
    try:
        with Image.open(seg_path) as seg:
            if len(seg.getbands()) != 1:
                return 'mode', seg.mode
            seg_size = seg.size
            if img_path is not None:
                with Image.open(img_path) as img:
                    img_size = _oriented_size(img)
                if seg_size != img_size:
                    return 'size', (seg_size, img_size)
            if seg.mode in ('L', 'P'):
                low, high = seg.getextrema()  # decodes; cheaper than the histogram
                if _VALID[low:high + 1].all():
                    return None
                present = np.flatnonzero(np.asarray(seg.histogram()[:256]))
            else:  # I;16, I, F, 1: every value as decoded, before the uint8 cast
                present = np.unique(np.asarray(seg))
    except Exception as exc:  # noqa: BLE001 - any decoding failure is this file's problem
        text = str(exc).strip().splitlines()
        return 'unreadable', text[0][:80] if text else type(exc).__name__
    present = present.astype(np.int64)
    bad = present[(present < 0) | (present > 255)]
    inside = present[(present >= 0) & (present <= 255)]
    bad = np.concatenate([inside[~_VALID[inside]], bad])
    if bad.size:
        return 'values', [int(v) for v in bad]
    return None


def _workers(total, parallel_from=None):
    if total < (_PARALLEL_FROM if parallel_from is None else parallel_from):
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    per_node = int(os.environ.get('LOCAL_WORLD_SIZE', '1') or 1)  # every rank checks
    return max(1, min(_MAX_WORKERS, cores // max(1, per_node)))


class _Progress:
    """A progress line on stderr for large sets: redrawn on a terminal, start and end lines in
    a log file."""

    def __init__(self, total, what, workers, progress_from=None):
        self.total, self.done, self.start = total, 0, time.time()
        self.enabled = total >= (_PROGRESS_FROM if progress_from is None else progress_from)
        self.tty = self.enabled and sys.stderr.isatty()
        self.what, self.workers, self.last = what, workers, 0.0
        if self.enabled and not self.tty:
            print(f'mmattn: checking {total} {what} ({max(1, workers)} processes)',
                  file=sys.stderr, flush=True)

    def update(self, n=1):
        self.done += n
        now = time.time()
        if self.tty and (now - self.last > 0.2 or self.done == self.total):
            self.last = now
            width = 30
            filled = width * self.done // max(1, self.total)
            print(f'\rmmattn: checking {self.what} [{"#" * filled}{"." * (width - filled)}] '
                  f'{self.done}/{self.total} {now - self.start:.0f}s', end='', file=sys.stderr,
                  flush=True)

    def close(self):
        if not self.enabled:
            return
        end = '\n' if self.tty else ''
        print(f'{end}mmattn: checked {self.total} {self.what} in {time.time() - self.start:.1f} s',
              file=sys.stderr, flush=True)


def scan_files(items, inspect_one, what, workers=None, initializer=None, initargs=(),
               parallel_from=None, progress_from=None):
    """``inspect_one(item)`` for every item (a picklable top-level function), in worker
    processes from ``parallel_from`` items on (default: 500; ``workers`` overrides the count),
    with a progress line on stderr from ``progress_from`` items on (default: 2000).

    Returns:
        list: ``(index, *result)`` of the items whose result is not None, in input order.
    """
    items = list(items)
    workers = _workers(len(items), parallel_from) if workers is None else workers
    progress = _Progress(len(items), what, workers, progress_from)
    found = []
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        results = map(inspect_one, items)
        for index, result in enumerate(results):
            if result:
                found.append((index, *result))
            progress.update()
    else:
        import multiprocessing
        method = 'fork' if 'fork' in multiprocessing.get_all_start_methods() else None
        context = multiprocessing.get_context(method)
        chunk = max(16, min(256, len(items) // (workers * 16)))
        with context.Pool(workers, initializer=initializer, initargs=initargs) as pool:
            for index, result in enumerate(pool.imap(inspect_one, items, chunksize=chunk)):
                if result:
                    found.append((index, *result))
                progress.update()
    progress.close()
    return found


def scan_label_maps(pairs, valid, what='segmentation maps', workers=None):
    """:func:`inspect_pair` for every ``(image path or None, map path)``.

    Returns:
        list: ``(index, kind, detail)`` of the pairs with a problem, in input order.
    """
    return scan_files(pairs, inspect_pair, what, workers, _init_worker, (valid, ))


def label_problems(pairs, names, seg_dir, rules, shown=3):
    """One line per kind of problem found in ``pairs`` (``names``: the map names to print)."""
    found = scan_label_maps(pairs, rules['valid'])
    total = len(pairs)

    def first(rows, fmt):
        more = f', ... (+{len(rows) - shown} more)' if len(rows) > shown else ''
        return ', '.join(f'{names[i]} ({fmt(detail)})' for i, _, detail in rows[:shown]) + more

    def values(bad):
        listed = ', '.join(str(v) for v in bad[:_SHOWN_VALUES])
        return 'value ' + listed + (', ...' if len(bad) > _SHOWN_VALUES else '')

    def size(sizes):
        (sw, sh), (iw, ih) = sizes
        return f'{sw}x{sh}, image {iw}x{ih}'

    heads = ' / '.join(f'num_classes={n}, ignore_index={i}'
                       for n, i in dict.fromkeys(rules['heads']))
    label_map = ', the class subset of metainfo' if rules['label_map'] else ''
    lines = {
        'unreadable': ('cannot be read as images', lambda d: d),
        'mode': ('have more than one channel (an index map of mode L, P or I is expected)',
                 lambda d: f'mode {d}'),
        'size': ('differ in size from their image', size),
        'values': (f'hold label values the loss cannot take (allowed raw values: '
                   f'{describe_values(rules["valid"])}, for {heads}, '
                   f'reduce_zero_label={rules["reduce_zero_label"]}{label_map})', values),
    }
    problems = []
    for kind, (text, fmt) in lines.items():
        rows = [row for row in found if row[1] == kind]
        if rows:
            problems.append(f'{len(rows)} of {total} segmentation maps under {seg_dir} {text}: '
                            f'{first(rows, fmt)}')
    return problems
