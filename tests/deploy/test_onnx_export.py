"""ONNX export (torch.onnx, dynamic H and W) of every backbone class and of one detector and one
segmentor, checked against PyTorch in onnxruntime at several sizes, one odd."""
import os.path as osp
import re

import pytest
import torch

from conftest import REPO_ROOT, load_tool
from mmattn.deploy import TINY_BACKBONES, build_tiny_backbone, export_and_check, generic_size
from mmattn.ops.neighborhood import (_neighborhood_attention_2d_gather,
                                     neighborhood_attention_2d_reference)

RTOL = 1e-4
SHAPES = [(96, 128), (333, 517)]  # the second odd on both axes


def test_generic_size_takes_the_padding_branches():
    for n in (32, 96, 128, 333, 512):
        m = generic_size(n)
        assert m >= n and m % 32 == 1
        maps = [-(-m // s) for s in (4, 8, 16, 32)]
        assert all(size % 2 for size in maps[:3])  # every patch merge pads
        assert maps[2] % 7 and maps[3] % 7  # every 7-window of stages 3/4 pads


@pytest.mark.parametrize('h,w,ks,d', [(9, 13, 3, 1), (17, 23, 5, 2), (21, 15, 3, 3)])
def test_traced_neighborhood_attention_equals_reference(h, w, ks, d):
    """The gather form NA takes under torch.export / torch.compile, against the definition."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, h, w, 2, 4, generator=g, dtype=torch.float64) for _ in range(3))
    rpb = torch.randn(2, 2 * ks - 1, 2 * ks - 1, generator=g, dtype=torch.float64)
    out = _neighborhood_attention_2d_gather(q, k, v, ks, d, rpb, 0.5, 0.)
    ref = neighborhood_attention_2d_reference(q, k, v, ks, d, rpb, scale=0.5)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.deploy
@pytest.mark.parametrize('name', sorted(TINY_BACKBONES))
def test_backbone_exports_with_dynamic_hw(name, tmp_path):
    torch.manual_seed(0)
    model = build_tiny_backbone(name)
    ranges, checks, traced = export_and_check(model, str(tmp_path / f'{name}.onnx'), SHAPES)
    assert set(ranges) == {'H', 'W'} and all(hi is None for _, hi in ranges.values())
    assert all(lo <= 65 for lo, _ in ranges.values())  # tiny archs: any input from 65 px
    # one file, three sizes: both requested ones and the traced one
    assert sorted({c.shape for c in checks}) == sorted(SHAPES + [traced])
    assert len(checks) == 3 * len(model.out_indices)
    worst = max(checks, key=lambda c: c.rel_diff)
    assert worst.rel_diff <= RTOL, worst


def _run_export_tool(capsys, config, *args):
    tool = load_tool(osp.join('deploy', 'export_onnx'))
    rc = tool.main([osp.join(REPO_ROOT, config), *args])
    out = capsys.readouterr().out
    assert rc == 0, out
    diffs = {}
    for h, w, name, rel in re.findall(r'^\s+(\d+)x(\d+) (\S+)\s+max abs diff \S+\s+max rel diff '
                                      r'(\S+)$', out, re.M):
        diffs[(int(h), int(w), name)] = float(rel)
    return out, diffs


@pytest.mark.deploy
@pytest.mark.parametrize('config,outputs', [
    ('configs/demo/biformer_retinanet_synthetic.py', 10),  # cls + bbox maps of 5 levels
    ('configs/demo/biformer_fpn_synthetic.py', 1),  # Semantic FPN logits
])
def test_full_model_exports_end_to_end(capsys, tmp_path, config, outputs):
    out, diffs = _run_export_tool(capsys, config, '--shape', '96', '128', '--check-shape', '97',
                                  '131', '--dynamic', '--out', str(tmp_path / 'model.onnx'))
    assert 'dynamic input dims: H in [' in out
    shapes = {(h, w) for h, w, _ in diffs}
    assert {(96, 128), (97, 131)} <= shapes and len(shapes) == 3  # + the traced size
    assert len(diffs) == 3 * outputs
    assert max(diffs.values()) <= RTOL, diffs
