"""The OpenMMLab model index of mmattn: ``model-index.yml`` and the ``metafile.yml`` it imports.

The index is what ``mim search mmattn`` reads (mmdet's and mmseg's format: Collections of papers,
Models with ``Config``, ``Metadata`` and ``Results``). Its results are the authors' published
numbers only; its ``Parameters`` and ``FLOPs`` are measured by ``tools/analysis/get_flops.py``
and written back by ``tools/analysis/model_index.py --update``.
"""
import glob
import itertools
import os.path as osp
from typing import Dict, List

import yaml

INDEX_FILE = 'model-index.yml'
# The config folders the index covers; configs/demo (synthetic data) and configs/_base_ are not
# models a user trains on COCO / ADE20K.
INDEXED_FOLDERS = ('det', 'seg', 'plug')


def read_index(root: str) -> Dict[str, dict]:
    """``{metafile path: parsed metafile}`` of every metafile ``model-index.yml`` imports."""
    with open(osp.join(root, INDEX_FILE), encoding='utf-8') as f:
        index = yaml.safe_load(f)
    metafiles = {}
    for rel in index['Import']:
        with open(osp.join(root, rel), encoding='utf-8') as f:
            metafiles[rel] = yaml.safe_load(f)
    return metafiles


def index_models(root: str) -> List[dict]:
    """Every ``Models`` entry of the index, in file order."""
    return [model for meta in read_index(root).values() for model in meta['Models']]


def configs_on_disk(root: str) -> List[str]:
    """The configs the index must list: every ``configs/<folder>/*.py`` of the indexed folders."""
    return sorted(
        osp.relpath(path, root) for folder in INDEXED_FOLDERS
        for path in glob.glob(osp.join(root, 'configs', folder, '*.py')))


def index_problems(root: str) -> List[str]:
    """What is wrong with the index: configs missing from it, entries whose config is missing,
    duplicate names, entries without the fields mim shows. Empty when the index is sound."""
    models = index_models(root)
    listed = [model['Config'] for model in models]
    problems = [f'{path}: not in {INDEX_FILE}' for path in configs_on_disk(root)
                if path not in listed]
    problems += [f'{model["Name"]}: config {model["Config"]} does not exist' for model in models
                 if not osp.isfile(osp.join(root, model['Config']))]
    names = [model['Name'] for model in models]
    problems += [f'{name}: listed {names.count(name)} times' for name in sorted(set(names))
                 if names.count(name) > 1]
    for model in models:
        metadata = model.get('Metadata', {})
        missing = [key for key in ('Backbone', 'Parameters', 'FLOPs', 'Training Data',
                                   'Results Source') if metadata.get(key) is None]
        if missing:
            problems.append(f'{model["Name"]}: Metadata lacks {", ".join(missing)}')
    return problems


def write_metafile(path: str, data: dict):
    """Rewrite a metafile, keeping its leading comment block."""
    with open(path, encoding='utf-8') as f:
        header = list(itertools.takewhile(lambda line: line.startswith('#'), f))
    with open(path, 'w', encoding='utf-8') as f:
        f.writelines(header)
        yaml.safe_dump(data, f, sort_keys=False, width=100, allow_unicode=True)
