"""Export a backbone or a whole detector / segmentor to ONNX and check it in onnxruntime.

    python tools/deploy/export_onnx.py CONFIG [CHECKPOINT] --shape H W [--dynamic]
        [--backbone-only] [--img IMG] [--out FILE.onnx] [--check-shape H W ...]

The graph takes the normalised image batch (N, 3, H, W): mean/std/bgr_to_rgb of the config's
data preprocessor applied, no padding (every mmattn backbone pads inside). Full models are
exported in their ``tensor`` mode (see :class:`mmattn.deploy.TensorMode`): RetinaNet's head maps,
Mask R-CNN's backbone + neck + RPN maps, the segmentors' logits; box decoding, NMS and the RoI
stage are left to the caller. Prints the max abs / rel difference of every output against
PyTorch, at --shape, at every --check-shape and (dynamic) at the traced size.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np
import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?', default=None)
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'))
    parser.add_argument('--check-shape', type=int, nargs=2, action='append', default=[],
                        metavar=('H', 'W'), help='more sizes to compare at (dynamic export)')
    parser.add_argument('--dynamic', action='store_true', help='symbolic H and W')
    parser.add_argument('--backbone-only', action='store_true')
    parser.add_argument('--img', help='image file (default: a seeded random image)')
    parser.add_argument('--out',
                        help='output .onnx (default: work_dirs/onnx/<config>[_backbone].onnx)')
    parser.add_argument('--rtol', type=float, default=1e-4,
                        help='exit 1 when an output differs more (relative to its max |value|)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    return parser.parse_args(argv)


def build_model(config, checkpoint=None, cfg_options=()):
    """(model in eval mode, its data preprocessor config) from a config file."""
    from mmengine.config import Config, DictAction
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(config)
    if cfg_options:
        parser = argparse.ArgumentParser()
        parser.add_argument('--o', nargs='+', action=DictAction)
        cfg.merge_from_dict(parser.parse_args(['--o', *cfg_options]).o)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmdet.registry import MODELS
    import mmattn  # noqa: F401  (registers the backbones into mmdet / mmseg)
    if checkpoint:
        if not osp.isfile(checkpoint):
            raise SystemExit(f'export_onnx.py: checkpoint not found: {checkpoint}')
    else:
        without_missing_pretrained(cfg.model)
    model = MODELS.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    else:
        model.init_weights()
    return model.eval(), cfg.model.get('data_preprocessor', {})


def without_missing_pretrained(model_cfg):
    """No CHECKPOINT: an ``init_cfg=dict(type='Pretrained')`` file that does not exist (e.g. the
    configs' ``checkpoints/*.pth`` on a fresh checkout) is dropped, so the export runs with
    random weights, and one line says so. The ONNX check compares PyTorch and onnxruntime on
    the same weights, so it holds for trained weights too."""
    from mmattn.utils import missing_pretrained
    missing = missing_pretrained({'model': model_cfg})
    if not missing:
        return

    def drop(node):
        if isinstance(node, dict):
            init = node.get('init_cfg')
            if isinstance(init, dict) and str(init.get('checkpoint', '')) in missing:
                node['init_cfg'] = None
            for value in node.values():
                drop(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                drop(value)

    drop(model_cfg)
    print(f'export_onnx.py: no CHECKPOINT given and {", ".join(missing)} (init_cfg) does not '
          'exist: exporting random weights (the graph and the onnxruntime check are the same; '
          'pass a CHECKPOINT to export trained weights)', file=sys.stderr)


def image_tensor(shape, preprocessor, img=None, seed=0):
    """(1, 3, H, W) float tensor: the image resized to ``shape`` (or a seeded random image),
    normalised like the data preprocessor (no padding)."""
    height, width = shape
    if img:
        import mmcv
        pixels = mmcv.imresize(mmcv.imread(img), (width, height)).astype(np.float32)  # BGR
    else:
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(
            np.float32)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    if preprocessor.get('bgr_to_rgb', False):
        x = x.flip(1)
    mean = torch.tensor(preprocessor.get('mean', [0., 0., 0.])).view(1, 3, 1, 1)
    std = torch.tensor(preprocessor.get('std', [1., 1., 1.])).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def main(argv=None):
    args = parse_args(argv)
    from mmattn.deploy import TensorMode, export_and_check
    torch.manual_seed(0)
    model, preprocessor = build_model(args.config, args.checkpoint, args.cfg_options)
    if args.backbone_only:
        module, names = model.backbone, None
        names = [f'stage{i}' for i in model.backbone.out_indices]
    else:
        module = TensorMode(model)
        names = module.output_names()
    stem = osp.splitext(osp.basename(args.config))[0] + ('_backbone' if args.backbone_only else '')
    out = args.out or osp.join('work_dirs', 'onnx', f'{stem}.onnx')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    shapes = [tuple(args.shape)] + [tuple(s) for s in args.check_shape]
    inputs = {}

    class Inputs(dict):  # the image at every size asked for, traced size included

        def __contains__(self, shape):
            return True

        def __getitem__(self, shape):
            if shape not in inputs:
                inputs[shape] = image_tensor(shape, preprocessor, args.img)
            return inputs[shape]

    ranges, checks, traced = export_and_check(module, out, shapes, dynamic=args.dynamic,
                                              output_names=names, inputs=Inputs())
    what = type(model.backbone).__name__ + (' backbone' if args.backbone_only else
                                            f' {type(model).__name__} (tensor mode)')
    print(f'exported {what} -> {out} (opset 18, torch {torch.__version__})')
    if args.dynamic:
        dims = ', '.join(f'{k} in [{lo}, {"inf" if hi is None else hi}]'
                         for k, (lo, hi) in ranges.items())
        print(f'dynamic input dims: {dims} (traced at {traced[0]}x{traced[1]})')
    else:
        print('fixed input shape: ' + ', '.join(f'{h}x{w}' for h, w in shapes) +
              ' (one file per shape; pass --dynamic for symbolic H, W)')
    worst = 0.
    for check in checks:
        worst = max(worst, check.rel_diff)
        print(f'  {check.shape[0]}x{check.shape[1]} {check.output:<14} max abs diff '
              f'{check.abs_diff:.3e}  max rel diff {check.rel_diff:.3e}')
    ok = worst <= args.rtol
    print(f'onnxruntime vs PyTorch: worst rel diff {worst:.3e} '
          f'{"<=" if ok else ">"} {args.rtol:g}: {"OK" if ok else "MISMATCH"}')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
