"""Shared pytest fixtures and hooks. The helpers the tests import are in helpers.py
(tests/ has no __init__.py: mmseg installs a top-level ``tests``)."""
import os
import os.path as osp

import pytest
import torch

from helpers import load_tool

# Subprocesses (tools/train.py, test.py, ...) import mmattn from this working tree, not from the
# copy `make install` put in site-packages, so a test run right after an edit tests the edit.
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
os.environ['PYTHONPATH'] = os.pathsep.join(
    [REPO_ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])


@pytest.fixture(scope='session')
def synthetic_data(tmp_path_factory):
    """A tiny synthetic COCO + ADE20K pair (4 train / 2 val images each); returns its root."""
    root = tmp_path_factory.mktemp('synthetic')
    load_tool('make_synthetic').make_synthetic(str(root), num_train=4, num_val=2, seed=0,
                                               verbose=False)
    return str(root)


@pytest.fixture(autouse=True)
def _threads():
    """Every test runs on at most 2 torch threads (the shared CPU machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(min(2, old))
    yield
    torch.set_num_threads(old)
