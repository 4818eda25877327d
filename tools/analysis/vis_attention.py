#!/usr/bin/env python
"""What one query pixel attends to, per family, drawn over the image (random or loaded weights).

The chosen attention layer's input is captured during a real forward pass of the backbone; the
weights are then recomputed by the op's ``*_reference`` with ``return_weights=True`` from the
layer's own parameters, so the pictures show the definition, not a re-implementation. What is
drawn is declared for each registered op (``ATTENTION_PANELS`` in the tools module its
declaration names, ``mmattn/analysis/ops/<op>.py`` for mmattn's own):

- BiFormer (BRA): the query's region, its top-k routed key regions, and the attention weights;
- NAT / DiNAT: the (dilated) neighbourhood and its weights;
- Slide-Transformer: the k x k slide window and its weights (deformed shifting included);
- GroupMixFormer: the token-mixing weights of each group proxy (aggregator kernel 1/3/5/7);
- Dual-ViT: the query's attention over the semantic tokens, and the semantic token's (the one
  over the query) attention over the pixels.

    python tools/analysis/vis_attention.py --backbone DiNAT:tiny --image demo.jpg --query 120 90
    python tools/analysis/vis_attention.py --backbone BiFormer:small --list
    python tools/analysis/vis_attention.py --backbone NAT:tiny --checkpoint nat_tiny.pth --layer 3

Weights are averaged over heads. Without ``--image`` a synthetic picture is used.
"""
import argparse
import os
import os.path as osp
from typing import Callable, Dict, NamedTuple, Optional

import numpy as np
import torch

from mmattn.analysis.models import build_backbone, short_name
from mmattn.ops import op_specs

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)  # ImageNet, as the configs


class Layer(NamedTuple):
    name: str
    module: torch.nn.Module
    args: tuple


def declared_panels() -> Dict[str, Callable]:
    """Attention module class name -> ``panels(module, args, locate, captures)``, as every
    registered op declares (``ATTENTION_PANELS`` of its tools module); read on every call, so an
    op registered after this module was imported is drawn too."""
    return {name: fn for spec in op_specs().values()
            for name, fn in spec.attention_panels().items()}


def panel_kind(module) -> Optional[str]:
    """The :func:`declared_panels` key of a module: its class or a base class (e.g. a
    token-layout subclass)."""
    declared = declared_panels()
    return next((cls.__name__ for cls in type(module).__mro__ if cls.__name__ in declared), None)


def feature_query(query_xy, image_hw, map_hw) -> tuple:
    """(row, col) on a map of ``map_hw`` covering the image, for image pixel ``query_xy``."""
    x, y = query_xy
    return (min(int(y * map_hw[0] / image_hw[0]), map_hw[0] - 1),
            min(int(x * map_hw[1] / image_hw[1]), map_hw[1] - 1))


def draw_panels(layer: Layer, query_xy, image_hw, captures) -> list:
    """The panels of ``layer`` for image pixel ``query_xy`` (x, y) of an ``image_hw`` image."""
    draw = declared_panels()[panel_kind(layer.module)]
    context = {name: (lay.module, lay.args) for name, lay in captures.items()}
    return draw(layer.module, layer.args, lambda hw: feature_query(query_xy, image_hw, hw),
                context)


def attention_layers(model, image) -> Dict[str, Layer]:
    """Every attention layer with a panel and every other module of :mod:`mmattn.ops` (e.g.
    Dual-ViT's semantic init, whose input size a panel reads), with its forward inputs captured
    from one forward pass, in forward order."""
    captures, hooks = {}, []

    def capture(name):
        def hook(module, args):  # returns None: a returned value would replace the inputs
            captures.setdefault(name, Layer(name, module, args))
        return hook

    for name, module in model.named_modules():
        if panel_kind(module) or type(module).__module__.startswith('mmattn.ops.'):
            hooks.append(module.register_forward_pre_hook(capture(name)))
    try:
        with torch.no_grad():
            model(image)
    finally:
        for h in hooks:
            h.remove()
    return captures


def load_image(path, size):
    from PIL import Image
    if path is None:  # synthetic: gradient background, a bright disc and a dark bar
        h, w = size
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 96.)], -1)
        img[(yy - h * .4)**2 + (xx - w * .35)**2 < (min(h, w) * .18)**2] = (250, 240, 90)
        img[int(h * .7):int(h * .8), int(w * .5):int(w * .9)] = (20, 30, 120)
        return img.astype(np.uint8)
    return np.asarray(Image.open(path).convert('RGB').resize(size[::-1], Image.BILINEAR))


def to_tensor(img):
    x = (torch.from_numpy(img).float() - torch.tensor(MEAN)) / torch.tensor(STD)
    return x.permute(2, 0, 1)[None]


def render(img, panel, query_xy, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    h, w = img.shape[:2]
    heat = panel.heat.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 6 * h / w + .6), dpi=100)
    ax.imshow(img, extent=(0, w, h, 0))
    shown = ax.imshow(heat, cmap='inferno', alpha=.6, interpolation='nearest',
                      extent=(0, w, h, 0))
    if panel.grid is not None:
        rh, rw = panel.grid
        for r in range(0, heat.shape[0] + 1, rh):
            ax.axhline(r * h / heat.shape[0], color='white', lw=.5, alpha=.6)
        for c in range(0, heat.shape[1] + 1, rw):
            ax.axvline(c * w / heat.shape[1], color='white', lw=.5, alpha=.6)
    ax.plot(*query_xy, marker='*', color='cyan', markersize=14, markeredgecolor='black')
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(panel.title, fontsize=8)
    fig.colorbar(shown, ax=ax, fraction=.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def visualize(spec, query_xy, image=None, size=(224, 224), layer=1, checkpoint=None,
              out_dir='work_dirs/vis_attention', **kwargs) -> list:
    """Render every panel of attention layer number ``layer``; returns the PNG paths.

    Raises:
        ValueError: a query outside the image, or a layer index out of range.
    """
    init_cfg = dict(type='Pretrained', checkpoint=checkpoint) if checkpoint else None
    model = build_backbone(spec, init_cfg=init_cfg, **kwargs)
    model.init_weights()
    model.eval()
    img = load_image(image, size)
    if not (0 <= query_xy[0] < img.shape[1] and 0 <= query_xy[1] < img.shape[0]):
        raise ValueError(f'--query {query_xy} (x, y) is outside the {img.shape[1]}x'
                         f'{img.shape[0]} image')
    captures = attention_layers(model, to_tensor(img))
    layers = [lay for lay in captures.values() if panel_kind(lay.module)]
    if not layers:
        raise ValueError(f'{spec} has no attention layer vis_attention can draw '
                         f'({sorted(declared_panels())})')
    if not 0 <= layer < len(layers):
        raise ValueError(f'--layer must be in 0..{len(layers) - 1} for {spec}, got {layer}')
    chosen = layers[layer]
    with torch.no_grad():
        panels = draw_panels(chosen, query_xy, img.shape[:2], captures)
    os.makedirs(out_dir, exist_ok=True)
    stem = f'{short_name(spec)}_{chosen.name.replace(".", "-")}'
    return [render(img, p, query_xy, osp.join(out_dir, f'{stem}_{p.name}.png')) for p in panels]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backbone', required=True, help='TYPE[:ARCH], e.g. DiNAT:tiny')
    parser.add_argument('--checkpoint', help='mmattn or official checkpoint (random if absent)')
    parser.add_argument('--image', help='image file; a synthetic picture if absent')
    parser.add_argument('--size', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'),
                        help='resize the image to H W (>= 32). Default: 224 224')
    parser.add_argument('--query', type=int, nargs=2, metavar=('X', 'Y'),
                        help='query pixel in the resized image. Default: the centre')
    parser.add_argument('--layer', type=int, default=1,
                        help='index of the attention layer in forward order (see --list)')
    parser.add_argument('--list', action='store_true', help='list the attention layers')
    parser.add_argument('--out-dir', default='work_dirs/vis_attention')
    args = parser.parse_args(argv)
    if min(args.size) < 32:
        parser.error(f'--size must be >= 32 on both sides, got {args.size}')
    query = tuple(args.query) if args.query else (args.size[1] // 2, args.size[0] // 2)
    if args.list:
        model = build_backbone(args.backbone).eval()
        captures = attention_layers(model, to_tensor(load_image(None, args.size)))
        layers = [lay for lay in captures.values() if panel_kind(lay.module)]
        for i, lay in enumerate(layers):
            print(f'{i}: {lay.name} ({type(lay.module).__name__})')
        return []
    paths = visualize(args.backbone, query, args.image, tuple(args.size), args.layer,
                      args.checkpoint, args.out_dir)
    print('\n'.join(paths))
    return paths


if __name__ == '__main__':
    main()
