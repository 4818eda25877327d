#!/usr/bin/env python
"""Re-parameterise a trained Slide-Transformer detector / segmentor for deployment.

Merges the fixed one-hot shift convolution and the learnable deformed-shifting convolution of
every slide attention into one convolution (their weights and biases added: convolution is
linear in its kernel), checks that the model's features are unchanged on a random input, and
writes

* OUT: ``{'state_dict': ..., 'meta': {'cfg': <config text>, ...}}`` in the deploy layout
  (``dep_conv`` holds the merged kernel, no ``dep_conv1``), and
* OUT with ``.py`` instead of its extension: the same config with ``model.backbone.deploy=True``
  and no backbone ``init_cfg``, so ``tools/test.py OUT.py OUT`` loads it again.

    python tools/reparameterize.py configs/seg/slide_fpn.py work_dirs/slide_fpn/iter_40000.pth \
        deploy/slide_fpn_deploy.pth
"""
import argparse
import os
import os.path as osp
import sys
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

import torch  # noqa: E402

import mmattn  # noqa: F401,E402  (registrations + checkpoint allow-list)
from mmattn.converters import load_checkpoint_file  # noqa: E402
from mmattn.utils.tool_setup import load_tool_config  # noqa: E402

from mmengine.config import DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Merge the slide-attention convolutions')
    parser.add_argument('config', help='the training config of the checkpoint')
    parser.add_argument('checkpoint', help='trained checkpoint (mmengine Runner file)')
    parser.add_argument('out', help='output checkpoint; its config is written next to it (.py)')
    parser.add_argument('--input-size', type=int, nargs=2, default=(224, 224),
                        metavar=('H', 'W'), help='random input used for the check')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest allowed feature difference (float32 rounding)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    args.launcher, args.work_dir = 'none', None
    return args


def build_model(cfg, scope):
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS.build(cfg.model)


def _features(model, x):
    with torch.no_grad():
        return [f.clone() for f in model.extract_feat(x)]


def main(argv=None):
    args = parse_args(argv)
    cfg, scope = load_tool_config(args, 'reparameterize')
    cfg.model.backbone.init_cfg = None  # the checkpoint holds every weight
    model = build_model(cfg, scope).eval()
    if not hasattr(model.backbone, 'switch_to_deploy'):
        raise SystemExit(f'tools/reparameterize.py: {type(model.backbone).__name__} has no '
                         'switch_to_deploy(); only SlideSwin / SlidePVT can be re-parameterised')
    if cfg.model.backbone.get('deploy', False):
        raise SystemExit('tools/reparameterize.py: the config already has backbone.deploy=True')
    ckpt = load_checkpoint_file(args.checkpoint)  # weights_only=True + mmattn's allow-list
    state_dict = ckpt.get('state_dict', ckpt)
    model.load_state_dict(state_dict, strict=True)

    x = torch.randn(1, cfg.model.backbone.get('in_channels', 3), *args.input_size)
    before = _features(model, x)
    model.backbone.switch_to_deploy()
    after = _features(model, x)
    diff = max((a - b).abs().max().item() for a, b in zip(before, after))
    print(f'max |feature difference| after the merge: {diff:.3g} (atol {args.atol:g})')
    if diff > args.atol:
        raise SystemExit(f'tools/reparameterize.py: features changed by {diff:.3g} > '
                         f'{args.atol:g}; nothing written')

    cfg.model.backbone.deploy = True
    out_config = osp.splitext(args.out)[0] + '.py'
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    cfg.dump(out_config)
    meta = dict(cfg=cfg.pretty_text, reparameterized_from=osp.abspath(args.checkpoint),
                max_feature_difference=diff)
    torch.save(dict(state_dict=model.state_dict(), meta=meta), args.out)
    print(f'wrote {args.out} and {out_config}')
    return args.out, out_config


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
