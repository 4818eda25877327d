#!/usr/bin/env python
"""Check the OpenMMLab model index, or measure and write its Parameters and FLOPs.

``model-index.yml`` imports ``configs/{det,seg,plug}/metafile.yml``; ``mim search mmattn`` reads
them. Without options the tool lists configs missing from the index and entries whose config is
gone (exit 1 if any). ``--update`` first builds every indexed model (meta device; CPU where a
model needs values, e.g. a two-stage detector's proposals) and writes the parameter count and
the MACs that ``tools/analysis/get_flops.py`` measures (detectors at 800x1280, segmentors at
512x512, get_flops' defaults) into the metafiles.

    python tools/analysis/model_index.py            # check
    python tools/analysis/model_index.py --update   # re-measure Parameters / FLOPs
"""
import argparse
import os.path as osp
import sys
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from mmattn.analysis.model_index import index_problems, read_index, write_metafile  # noqa: E402
from mmattn.utils.tool_cli import load_tool  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def update(root):
    get_flops = load_tool('analysis/get_flops', osp.join(root, 'tools'))
    for rel, meta in read_index(root).items():
        for model in meta['Models']:
            print(f'[model-index] {model["Config"]}', flush=True)
            result = get_flops.main([osp.join(root, model['Config'])])
            model['Metadata']['Parameters'] = int(result.params)
            model['Metadata']['FLOPs'] = int(result.macs)
        write_metafile(osp.join(root, rel), meta)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--update', action='store_true',
                        help='measure Parameters and FLOPs of every indexed config and write them')
    args = parser.parse_args(argv)
    if args.update:
        update(ROOT)
    problems = index_problems(ROOT)
    for line in problems:
        print(f'[model-index] {line}', file=sys.stderr)
    if problems:
        raise SystemExit(1)
    print('[model-index] ok')


if __name__ == '__main__':
    main()
