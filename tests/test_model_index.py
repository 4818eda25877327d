"""The OpenMMLab model index (model-index.yml + configs/*/metafile.yml) and what mim reads of it."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from helpers import REPO_ROOT, coco_runner_options, load_config
from mmattn.analysis.model_index import configs_on_disk, index_models, index_problems


def test_every_config_is_indexed_and_every_entry_exists():
    assert configs_on_disk(REPO_ROOT), 'no config found: wrong repository root?'
    assert index_problems(REPO_ROOT) == []


def test_results_are_marked_as_the_authors():
    """A model with Results says who reported them; the others say why they have none."""
    for model in index_models(REPO_ROOT):
        source = model['Metadata']['Results Source']
        if model.get('Results'):
            assert source.startswith('reported by the authors'), model['Name']
            assert 'not reproduced by mmattn' in source, model['Name']
            for result in model['Results']:
                assert result['Dataset'] in ('COCO', 'ADE20K') and result['Metrics']
        else:
            assert source.startswith('none:'), model['Name']
        assert 'Weights' not in model, f'{model["Name"]}: no weights are hosted'


@pytest.mark.parametrize('model', index_models(REPO_ROOT), ids=lambda m: m['Name'])
def test_index_entry_builds_with_its_parameters(model):
    """Each entry's config builds (on the meta device where it can: shapes only) and has the
    parameter count the index states (written by tools/analysis/model_index.py --update)."""
    cfg = load_config(model['Config'])
    scope = cfg.default_scope
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    __import__(f'{scope}.utils', fromlist=['register_all_modules']).register_all_modules(
        init_default_scope=True)
    try:
        with torch.device('meta'):
            net = registry.build(cfg.model)
    except RuntimeError:  # a host that reads a value while building (mmdet Swin's drop path)
        net = registry.build(cfg.model)
    assert sum(p.numel() for p in net.parameters()) == model['Metadata']['Parameters']


def _installed_with_mim_data():
    """The mmattn folder mim resolves, when it carries the model index (a regular install)."""
    try:
        from mim.utils import get_installed_path
        path = get_installed_path('mmattn')
    except Exception:  # noqa: BLE001  (mim missing or mmattn not installed)
        return None
    return path if osp.isfile(osp.join(path, '.mim', 'model-index.yml')) else None


needs_mim_install = pytest.mark.skipif(
    _installed_with_mim_data() is None,
    reason='mmattn is not installed as a regular package with its .mim data (make install does '
    'that; an editable install cannot be found by openmim 0.3.9)')


def _mim(*args, cwd, timeout=600):
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    return subprocess.run([mim, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
@needs_mim_install
def test_mim_search_lists_the_index(tmp_path):
    every = _mim('search', 'mmattn', cwd=tmp_path)
    assert every.returncode == 0, every.stderr[-2000:]
    listed = set(re.findall(r'config id: (\S+)', every.stdout))
    assert listed == {model['Name'] for model in index_models(REPO_ROOT)}
    family = _mim('search', 'mmattn', '--model', 'biformer', cwd=tmp_path)
    assert family.returncode == 0, family.stderr[-2000:]
    biformer = set(re.findall(r'config id: (\S+)', family.stdout))
    assert biformer == {model['Name'] for model in index_models(REPO_ROOT)
                        if model['In Collection'] == 'BiFormer'}


@pytest.mark.slow
@needs_mim_install
def test_mim_train_runs_mmattn_train(synthetic_data, tmp_path):
    """`mim train mmattn CONFIG` runs the packaged tools/train.py: 2 iterations on synthetic data
    write a checkpoint, and a config's missing dataset stops it with mmattn's one-line error."""
    config = osp.join(REPO_ROOT, 'configs/demo/biformer_retinanet_synthetic.py')
    work_dir = tmp_path / 'wd'
    run = _mim('train', 'mmattn', config, '--gpus', '0', '--work-dir', str(work_dir),
               '--cfg-options', *coco_runner_options(synthetic_data, 'model.test_cfg.score_thr'),
               cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert '.mim/tools/train.py' in run.stdout  # mim's "Training command is ..." line
    assert (work_dir / 'epoch_1.pth').is_file()

    missing = _mim('train', 'mmattn', 'configs/det/biformer_maskrcnn.py', '--gpus', '0',
                   '--work-dir', str(tmp_path / 'coco'), cwd=REPO_ROOT)
    assert missing.returncode != 0
    assert 'mmattn: dataset not found: expected data/coco/' in missing.stderr
