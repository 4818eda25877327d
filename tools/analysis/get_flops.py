#!/usr/bin/env python
"""Params and multiply-adds (MACs) of a config's model or of a bare backbone at an input size.

MACs are multiply-adds of convolutions, linears and attention matmuls: what the papers call
"FLOPs" (1 MAC = 2 FLOPs; norms, softmax and element-wise ops are not counted). Unlike
mmengine's counter, attention is counted: SDPA (also the CPU kernel), every op's matmuls, and
the definition's cost for ops whose fast path computes masked padding (neighborhood attention).
Gathers cost no MACs; the bytes they write are reported as memory traffic.

    python tools/analysis/get_flops.py --backbone NAT --arch tiny --shape 224
    python tools/analysis/get_flops.py --backbone BiFormer --arch small --shape 800 1280 --detail
    python tools/analysis/get_flops.py --backbone Swin-T --shape 512
    python tools/analysis/get_flops.py configs/seg/nat_upernet.py --shape 512 512
    python tools/analysis/get_flops.py configs/det/biformer_maskrcnn.py --backbone-only
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction

from mmattn.analysis.flops import measure, stage_rows
from mmattn.analysis.models import BASELINES, build_backbone

UNITS = ('MACs are multiply-adds (the papers\' "FLOPs"; 1 MAC = 2 FLOPs): convolutions, linears '
         'and attention matmuls; norms, softmax and element-wise ops not counted.')


def build_from_config(path, cfg_options=None):
    """(model, codebase) from a config file, with mmattn and the codebase's modules registered."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmdet')
    if scope not in ('mmdet', 'mmseg'):
        raise ValueError(f'default_scope {scope!r} in {path}; expected "mmdet" or "mmseg"')
    if scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    return MODELS.build(cfg.model), scope


def tensor_mode_forward(scope, height, width):
    """A detector's / segmentor's ``mode='tensor'`` forward with one image's metainfo."""
    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                batch_input_shape=(height, width), scale_factor=(1., 1.))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample as Sample
    else:
        from mmseg.structures import SegDataSample as Sample

    def forward(model, x):
        return model(x, [Sample(metainfo=meta)], mode='tensor')

    return forward


def count(model, height, width, forward=None, device='auto'):
    """:func:`measure` on meta (instant) or, where the model needs real values, on CPU."""
    in_channels = getattr(getattr(model, 'backbone', model), 'in_channels', 3)
    inputs = (torch.zeros(1, in_channels, height, width), )
    if device != 'auto':
        return measure(model, inputs, forward, device=device)
    try:
        return measure(model, inputs, forward, device='meta')
    except (NotImplementedError, RuntimeError) as exc:
        print(f'note: counting on CPU (the model needs real values on meta: '
              f'{type(exc).__name__})', file=sys.stderr)
        return measure(model, inputs, forward, device='cpu')


def format_report(title, result, model=None, detail=False):
    lines = [title, UNITS,
             f'params: {result.params / 1e6:.3f} M',
             f'MACs:   {result.macs / 1e9:.3f} G  (= {2 * result.macs / 1e9:.3f} GFLOPs)',
             f'gather traffic: {result.gather_bytes / 2**20:.1f} MiB written by index/gather ops',
             f'counted on: {result.device}']
    if detail and model is not None:
        lines += ['', '| module | params (M) | GMACs | share of MACs | gather MiB |',
                  '|---|---|---|---|---|']
        for name, params, macs, gbytes in stage_rows(result, model):
            share = 100 * macs / max(result.macs, 1)
            lines.append(f'| {name} | {params / 1e6:.3f} | {macs / 1e9:.3f} | {share:.1f}% | '
                         f'{gbytes / 2**20:.1f} |')
        lines += ['', '| op | GMACs |', '|---|---|']
        lines += [f'| {op} | {macs / 1e9:.3f} |'
                  for op, macs in sorted(result.op_macs.items(), key=lambda kv: -kv[1])]
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='?', help='mmdet / mmseg config file')
    parser.add_argument('--backbone', help='bare backbone: a registered mmattn type (BiFormer, '
                        f'NAT, ...) or a baseline ({", ".join(BASELINES)})')
    parser.add_argument('--arch', help="the backbone's arch_zoo key, e.g. tiny, small")
    parser.add_argument('--kwargs', nargs='+', action=DictAction, default={},
                        help='extra backbone arguments, e.g. n_win=7 auto_pad=False')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        help='input H [W]. Default: 224 for a backbone, 800 1280 for a detector '
                        'config, 512 512 for a segmentor config')
    parser.add_argument('--backbone-only', action='store_true',
                        help="with a config: count only the model's backbone")
    parser.add_argument('--detail', action='store_true', help='per-stage / per-op breakdown')
    parser.add_argument('--device', default='auto', choices=['auto', 'meta', 'cpu', 'cuda'],
                        help='auto: meta (shapes only), CPU when the model needs values')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if bool(args.config) == bool(args.backbone):
        parser.error('give either a config file or --backbone TYPE [--arch NAME]')
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H or H W, got {args.shape}')
    return args


def main(argv=None):
    args = parse_args(argv)
    forward = None
    if args.backbone:
        spec = args.backbone + (f':{args.arch}' if args.arch else '')
        model, what = build_backbone(spec, **args.kwargs), f'{spec} (bare backbone)'
        default_shape = (224, 224)
    else:
        model, scope = build_from_config(args.config, args.cfg_options)
        default_shape = (800, 1280) if scope == 'mmdet' else (512, 512)
        what = osp.basename(args.config)
        if args.backbone_only:
            model, what = model.backbone, f'{what} (backbone only)'
    shape = args.shape or default_shape
    height, width = shape[0], shape[-1]
    if args.config and not args.backbone_only:
        forward = tensor_mode_forward(scope, height, width)
    result = count(model, height, width, forward, args.device)
    print(format_report(f'{what}, input 1x3x{height}x{width}', result, model, args.detail))
    return result


if __name__ == '__main__':
    main()
