"""Generate the synthetic datasets used by the CPU demo and the tests.

Two datasets, both deterministic given ``--seed`` (the same seed, sizes and split always give
byte-identical files):

* ``<out>/coco``: a COCO-format *instance* dataset for stock ``CocoDataset`` + ``CocoMetric``
  (bbox and segm). Every image holds 1-4 non-overlapping shapes (``rectangle``, ``ellipse``,
  ``triangle``; the class is the shape, the fill colour is random) on a noisy background.
  Images have varied sizes. Each object's mask is the pycocotools rasterisation of its polygon,
  the pixels painted are exactly that mask, and the annotation stores either the polygon or
  the compressed RLE of the same mask (both kinds occur), with ``area`` = mask pixel count,
  ``bbox`` = tight ``[x, y, w, h]`` of the mask and ``iscrowd`` = 0.
  Layout: ``annotations/instances_{train,val}.json``, ``train/*.jpg``, ``val/*.jpg``.
* ``<out>/ade20k``: an ADE20K-layout semantic dataset for stock ``ADE20KDataset`` +
  ``IoUMetric``: ``images/{training,validation}/*.jpg`` and
  ``annotations/{training,validation}/*.png`` (mode ``L``; 0 = unlabelled, 1..N = the first N
  ADE20K classes, see ``ADE20K_CLASSES``). Scenes: sky on top, floor at the bottom, wall in
  between, buildings (rectangles) and trees (ellipses / triangles) on top; each class has its own
  colour family plus texture noise; thin unlabelled (0) outlines around objects.

Usage::

    python tools/make_synthetic.py --out data/synthetic                # both datasets
    python tools/make_synthetic.py --only coco --num-train 8 --num-val 4 --seed 1

Importable: ``make_coco(...)``, ``make_ade20k(...)`` and ``make_synthetic(...)``.
"""
import argparse
import json
import os
import os.path as osp
import sys

import cv2
import numpy as np
from pycocotools import mask as mask_utils

# Class names of the synthetic COCO set (CocoDataset selects categories by name, so every
# config that uses the set passes them as ``metainfo.classes``).
COCO_CLASSES = ('rectangle', 'ellipse', 'triangle')
COCO_PALETTE = [(220, 20, 60), (0, 128, 255), (0, 200, 0)]
# The first ADE20K classes (their ADE20KDataset ids 1..5); the configs select this subset with
# ``metainfo=dict(classes=...)`` so IoUMetric reports only classes that occur.
ADE20K_CLASSES = ('wall', 'building', 'sky', 'floor', 'tree')

DEFAULT_OUT = 'data/synthetic'
DEFAULT_NUM_TRAIN = 160
DEFAULT_NUM_VAL = 40

_SPLIT_IDS = {'train': 1, 'val': 2, 'training': 3, 'validation': 4}


def _rng(seed, split, index):
    """Independent stream per (seed, split, image), so split sizes do not shift each other."""
    return np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index)])


def _noisy_background(rng, h, w):
    base = rng.uniform(40, 215, size=3)
    # a smooth random gradient plus per-pixel noise
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = (rng.uniform(-0.3, 0.3, size=3)[None, None, :] * gx[..., None] +
            rng.uniform(-0.3, 0.3, size=3)[None, None, :] * gy[..., None])
    img = base[None, None, :] + grad + rng.normal(0, 14, size=(h, w, 3))
    return img


def _shape_polygon(rng, cls_name, cx, cy, rw, rh):
    """Polygon (N, 2) float of a shape centred at (cx, cy) with half extents (rw, rh)."""
    if cls_name == 'rectangle':
        angle = rng.uniform(-0.35, 0.35)  # mildly rotated
        corners = np.array([[-rw, -rh], [rw, -rh], [rw, rh], [-rw, rh]], dtype=np.float64)
    elif cls_name == 'ellipse':
        angle = rng.uniform(0, np.pi)
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        corners = np.stack([rw * np.cos(t), rh * np.sin(t)], axis=1)
    elif cls_name == 'triangle':
        angle = rng.uniform(0, 2 * np.pi)
        t = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.25, 0.25, size=3)
        corners = np.stack([rw * np.cos(t), rh * np.sin(t)], axis=1)
    else:
        raise ValueError(cls_name)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return corners @ rot.T + np.array([cx, cy])


def _coco_image(rng, image_id, file_name, ann_id_start):
    h = int(rng.integers(96, 161))
    w = int(rng.integers(112, 193))
    img = _noisy_background(rng, h, w)
    annotations = []
    placed = []  # boxes (x0, y0, x1, y1) with margin, to keep objects disjoint
    n_obj = int(rng.integers(1, 5))
    ann_id = ann_id_start
    for _ in range(n_obj):
        for _attempt in range(30):
            cls_idx = int(rng.integers(0, len(COCO_CLASSES)))
            rw = float(rng.uniform(9, 0.3 * min(h, w)))
            rh = float(np.clip(rw * rng.uniform(0.6, 1.6), 9, 0.35 * min(h, w)))
            r = max(rw, rh)
            cx = float(rng.uniform(r + 1, w - r - 1))
            cy = float(rng.uniform(r + 1, h - r - 1))
            box = (cx - r - 3, cy - r - 3, cx + r + 3, cy + r + 3)
            if all(box[2] < p[0] or box[0] > p[2] or box[3] < p[1] or box[1] > p[3]
                   for p in placed):
                break
        else:
            continue  # no free spot; fewer objects on this image
        poly = _shape_polygon(rng, COCO_CLASSES[cls_idx], cx, cy, rw, rh)
        flat = [round(float(v), 2) for v in poly.reshape(-1)]
        # the mask is the COCO rasterisation of the polygon: painting exactly these pixels keeps
        # the polygon annotation, the RLE annotation and the image in agreement
        rle = mask_utils.merge(mask_utils.frPyObjects([flat], h, w))
        mask = mask_utils.decode(rle).astype(bool)
        area = int(mask.sum())
        if area < 40:
            continue
        placed.append(box)
        colour = rng.uniform(0, 255, size=3)
        # keep the object visibly different from the local background
        bg_mean = img[mask].mean(axis=0)
        if np.abs(colour - bg_mean).sum() < 120:
            colour = 255.0 - bg_mean
        img[mask] = colour[None, :] + rng.normal(0, 10, size=(area, 3))
        x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
        if rng.random() < 0.5:
            segmentation = [flat]
        else:
            segmentation = {'size': [h, w], 'counts': rle['counts'].decode('ascii')}
        annotations.append(
            dict(
                id=ann_id,
                image_id=image_id,
                category_id=cls_idx + 1,
                bbox=[x, y, bw, bh],
                area=area,
                iscrowd=0,
                segmentation=segmentation))
        ann_id += 1
    img = np.clip(img, 0, 255).astype(np.uint8)
    image_info = dict(id=image_id, file_name=file_name, height=h, width=w)
    return img, image_info, annotations


def make_coco(out_dir=osp.join(DEFAULT_OUT, 'coco'), num_train=DEFAULT_NUM_TRAIN,
              num_val=DEFAULT_NUM_VAL, seed=0, verbose=True):
    """Write the synthetic COCO instance dataset to ``out_dir``; returns the json paths."""
    categories = [
        dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(COCO_CLASSES)
    ]
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    ann_files = {}
    for split, num in (('train', num_train), ('val', num_val)):
        os.makedirs(osp.join(out_dir, split), exist_ok=True)
        images, annotations = [], []
        for i in range(num):
            rng = _rng(seed, split, i)
            image_id = i + 1
            file_name = f'{i:06d}.jpg'
            img, info, anns = _coco_image(rng, image_id, file_name, len(annotations) + 1)
            cv2.imwrite(osp.join(out_dir, split, file_name), img,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(info)
            annotations.extend(anns)
        coco = dict(
            info=dict(description=f'mmattn synthetic shapes ({split}), seed {seed}'),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=categories)
        path = osp.join(out_dir, 'annotations', f'instances_{split}.json')
        with open(path, 'w') as f:
            json.dump(coco, f, sort_keys=True)
        ann_files[split] = path
        if verbose:
            print(f'[make_synthetic] coco/{split}: {len(images)} images, '
                  f'{len(annotations)} instances -> {path}')
    return ann_files


def _class_texture(rng, label, h, w):
    """A colour family per ADE class (BGR) with noise, so the classes are learnable."""
    families = {
        1: (150, 160, 175),  # wall: beige grey
        2: (60, 70, 150),  # building: brick red
        3: (225, 170, 110),  # sky: light blue
        4: (70, 110, 120),  # floor: brown olive
        5: (40, 140, 40),  # tree: green
    }
    base = np.array(families[label], dtype=np.float64) + rng.uniform(-25, 25, size=3)
    return base[None, None, :] + rng.normal(0, 12, size=(h, w, 3))


def _ade_image(rng):
    h = int(rng.integers(96, 161))
    w = int(rng.integers(128, 225))
    label = np.ones((h, w), dtype=np.uint8)  # wall everywhere
    sky_h = int(rng.integers(h // 6, h // 3))
    floor_y = int(rng.integers(2 * h // 3, 5 * h // 6))
    label[:sky_h] = 3
    label[floor_y:] = 4
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        cls = 2 if rng.random() < 0.5 else 5
        m = np.zeros((h, w), dtype=np.uint8)
        if cls == 2:  # building: axis-aligned block standing on the floor line
            bw = int(rng.integers(w // 8, w // 3))
            bh = int(rng.integers(h // 4, floor_y - 4))
            x0 = int(rng.integers(0, w - bw))
            cv2.rectangle(m, (x0, floor_y - bh), (x0 + bw, floor_y), 1, thickness=-1)
        else:  # tree: ellipse crown or triangle (conifer)
            cx = int(rng.integers(0, w))
            cy = int(rng.integers(sky_h // 2, floor_y))
            r = int(rng.integers(max(6, h // 12), max(7, h // 4)))
            if rng.random() < 0.5:
                cv2.ellipse(m, (cx, cy), (r, int(r * rng.uniform(0.8, 1.5))),
                            0, 0, 360, 1, thickness=-1)
            else:
                pts = np.array([[cx, cy - 2 * r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
                cv2.fillPoly(m, [pts], 1)
        objects.append((cls, m.astype(bool)))
    for cls, m in objects:
        label[m] = cls
    # thin unlabelled outlines around objects (like ADE's unannotated boundaries)
    for _, m in objects:
        edge = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        label[(edge > 0) & (rng.random((h, w)) < 0.5)] = 0
    img = np.zeros((h, w, 3), dtype=np.float64)
    for cls in range(1, len(ADE20K_CLASSES) + 1):
        sel = label == cls
        if sel.any():
            img[sel] = _class_texture(rng, cls, h, w)[sel]
    sel = label == 0
    img[sel] = rng.uniform(0, 255, size=(int(sel.sum()), 3))
    # a little global noise and blur so borders are not trivially sharp
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0)
    return img, label


def make_ade20k(out_dir=osp.join(DEFAULT_OUT, 'ade20k'), num_train=DEFAULT_NUM_TRAIN,
                num_val=DEFAULT_NUM_VAL, seed=0, verbose=True):
    """Write the synthetic ADE20K-layout dataset to ``out_dir``; returns the folders."""
    from PIL import Image
    folders = {}
    for split, num, prefix in (('training', num_train, 'ADE_train'),
                               ('validation', num_val, 'ADE_val')):
        img_dir = osp.join(out_dir, 'images', split)
        ann_dir = osp.join(out_dir, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(num):
            img, label = _ade_image(_rng(seed, split, i))
            stem = f'{prefix}_{i:08d}'
            cv2.imwrite(osp.join(img_dir, stem + '.jpg'), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            Image.fromarray(label).save(osp.join(ann_dir, stem + '.png'))
        folders[split] = (img_dir, ann_dir)
        if verbose:
            print(f'[make_synthetic] ade20k/{split}: {num} images -> {img_dir}, {ann_dir}')
    return folders


def make_synthetic(out=DEFAULT_OUT, num_train=DEFAULT_NUM_TRAIN, num_val=DEFAULT_NUM_VAL, seed=0,
                   only=None, verbose=True):
    """Write both datasets (or ``only='coco'|'ade20k'``) under ``out``."""
    if only not in (None, 'coco', 'ade20k'):
        raise ValueError(f'only must be None, "coco" or "ade20k", got {only!r}')
    result = {}
    if only in (None, 'coco'):
        result['coco'] = make_coco(osp.join(out, 'coco'), num_train, num_val, seed, verbose)
    if only in (None, 'ade20k'):
        result['ade20k'] = make_ade20k(osp.join(out, 'ade20k'), num_train, num_val, seed, verbose)
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=DEFAULT_OUT, help='output root (default: %(default)s)')
    parser.add_argument('--num-train', type=int, default=DEFAULT_NUM_TRAIN,
                        help='training images per dataset (default: %(default)s)')
    parser.add_argument('--num-val', type=int, default=DEFAULT_NUM_VAL,
                        help='validation images per dataset (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: %(default)s)')
    parser.add_argument('--only', choices=['coco', 'ade20k'], default=None,
                        help='generate only one of the two datasets')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.num_train < 1 or args.num_val < 1:
        sys.exit('make_synthetic: --num-train and --num-val must be >= 1')
    make_synthetic(args.out, args.num_train, args.num_val, args.seed, args.only)


if __name__ == '__main__':
    main()
