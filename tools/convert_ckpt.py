#!/usr/bin/env python
"""Convert an official checkpoint to an mmattn backbone state dict.

    python tools/convert_ckpt.py biformer biformer_small_best.pth checkpoints/biformer_small.pth

The output is ``{'state_dict': {...}}`` with tensors only: it loads under torch's
``weights_only=True`` and with ``init_cfg=dict(type='Pretrained', checkpoint=DST)``.
"""
import argparse
import os
import os.path as osp
import sys

import torch

import mmattn  # noqa: F401  (registers the families and the checkpoint allow-list)
from mmattn.converters import CONVERTERS, convert_checkpoint


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('family', choices=sorted(CONVERTERS), help='model family')
    parser.add_argument('src', help='official checkpoint (classification or det/seg)')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument(
        '--trusted', action='store_true',
        help='allow pickled Python objects in SRC (weights_only=False); only for files you trust')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        state_dict = convert_checkpoint(args.family, args.src, trusted=args.trusted)
    except (KeyError, RuntimeError, FileNotFoundError, TypeError, ValueError) as exc:
        sys.exit(f'convert_ckpt: {exc}')
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save({'state_dict': state_dict}, args.dst)
    params = sum(v.numel() for k, v in state_dict.items() if not k.endswith('num_batches_tracked'))
    print(f'convert_ckpt: wrote {len(state_dict)} tensors ({params / 1e6:.2f} M values) '
          f'for {args.family} to {args.dst}')


if __name__ == '__main__':
    main()
