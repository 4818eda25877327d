"""Shared pytest fixtures (tests/ has no __init__.py: mmseg installs a top-level ``tests``)."""
import importlib.util
import os.path as osp

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(name):
    """Import ``tools/<name>.py`` as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f'mmattn_tools_{name}',
                                                  osp.join(REPO_ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def synthetic_data(tmp_path_factory):
    """A tiny synthetic COCO + ADE20K pair (4 train / 2 val images each); returns its root."""
    root = tmp_path_factory.mktemp('synthetic')
    load_tool('make_synthetic').make_synthetic(str(root), num_train=4, num_val=2, seed=0,
                                               verbose=False)
    return str(root)
