"""ONNX export (torch.onnx) of every backbone class and of the detectors and segmentors, checked
against PyTorch in onnxruntime at several sizes, one odd: fixed-shape exports in ``make test``,
dynamic H and W (one graph, every size) in ``make test-deploy``."""
import os.path as osp
import re

import pytest
import torch

from helpers import REPO_ROOT, load_tool
from mmattn.deploy import (TINY_BACKBONES, build_tiny_backbone, export_and_check, export_onnx,
                           generic_size, max_diffs, onnxruntime_session, run_onnxruntime)
from mmattn.deploy.onnx import _adaptive_avg_pool2d_forward
from mmattn.ops.neighborhood import NeighborhoodAttention

RTOL = 1e-4
SHAPES = [(96, 128), (333, 517)]  # the second odd on both axes


def test_generic_size_takes_the_padding_branches():
    for n in (32, 96, 128, 333, 512):
        m = generic_size(n)
        assert m >= n and m % 32 == 1
        maps = [-(-m // s) for s in (4, 8, 16, 32)]
        assert all(size % 2 for size in maps[:3])  # every patch merge pads
        assert maps[2] % 7 and maps[3] % 7  # every 7-window of stages 3/4 pads


@pytest.mark.parametrize('size', [(1, 1), (5, 7), (13, 17), (25, 33), (6, 6)])
@pytest.mark.parametrize('bins', [1, 2, 3, 6, (2, 5)])
def test_exported_adaptive_pooling_equals_pytorch(size, bins):
    """The matmul form of ``nn.AdaptiveAvgPool2d`` used while exporting (UPerNet's pyramid
    pooling) takes PyTorch's bins at every map size, larger or smaller than the bin count."""
    pool = torch.nn.AdaptiveAvgPool2d(bins)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    torch.testing.assert_close(_adaptive_avg_pool2d_forward(pool, x), pool(x), rtol=1e-12,
                               atol=1e-12)


class _PaddedNeighborhoodAttention(torch.nn.Module):
    """NCHW in and out around :meth:`NeighborhoodAttention.forward_any_size` (NAT's blocks:
    maps smaller than kernel_size * dilation are zero padded before the op)."""

    def __init__(self):
        super().__init__()
        self.attn = NeighborhoodAttention(12, 3, kernel_size=5, dilation=2)

    def forward(self, x):
        return self.attn.forward_any_size(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@pytest.mark.deploy
def test_neighborhood_attention_exports_with_dynamic_hw(tmp_path):
    """One graph of dilated NA with rpb (the op's static-plan form) checked in onnxruntime
    against PyTorch on both sides of the size rule: traced at 9x13 (rows padded to
    kernel_size * dilation = 10), checked at 10x10 (the smallest unpadded map), 6x23 (rows
    padded) and 37x29 (odd, groups of unequal length)."""
    torch.manual_seed(0)
    module = _PaddedNeighborhoodAttention().eval()
    shapes = [(9, 13), (10, 10), (6, 23), (37, 29)]
    inputs = {s: torch.randn(1, 12, *s, generator=torch.Generator().manual_seed(i))
              for i, s in enumerate(shapes)}
    path = str(tmp_path / 'na.onnx')
    with torch.no_grad():
        export_onnx(module, inputs[shapes[0]], path)
    session = onnxruntime_session(path)
    for shape in shapes:
        with torch.no_grad():
            want = module(inputs[shape])
        diff, rel = max_diffs(want, run_onnxruntime(session, inputs[shape])[0])
        assert diff < 1e-5, (shape, diff, rel)


@pytest.mark.deploy
@pytest.mark.parametrize('name', sorted(TINY_BACKBONES))
def test_backbone_exports_at_two_sizes(name, tmp_path):
    """Fixed-shape exports (one graph per size, several times faster to export than a dynamic
    one on 2 cores): every output in onnxruntime equals PyTorch at both sizes."""
    torch.manual_seed(0)
    model = build_tiny_backbone(name)
    ranges, checks, _ = export_and_check(model, str(tmp_path / f'{name}.onnx'), SHAPES,
                                         dynamic=False)
    assert ranges == {}
    assert sorted({c.shape for c in checks}) == sorted(SHAPES)
    assert len(checks) == 2 * len(model.out_indices)
    worst = max(checks, key=lambda c: c.rel_diff)
    assert worst.rel_diff <= RTOL, worst


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


@pytest.mark.parametrize('config,outputs', [
    ('configs/demo/biformer_retinanet_synthetic.py', 10),  # cls + bbox maps of 5 levels
    ('configs/demo/biformer_upernet_synthetic.py', 1),  # UPerNet logits
])
def test_full_model_exports_at_a_fixed_odd_size(capsys, tmp_path, config, outputs):
    out, diffs = _run_export_tool(capsys, config, '--shape', '97', '131', '--out',
                                  str(tmp_path / 'model.onnx'))
    assert 'fixed input shape: 97x131' in out
    assert {(h, w) for h, w, _ in diffs} == {(97, 131)} and len(diffs) == outputs
    assert max(diffs.values()) <= RTOL, diffs


@pytest.mark.deploy
@pytest.mark.parametrize('config,outputs', [
    ('configs/demo/biformer_retinanet_synthetic.py', 10),  # cls + bbox maps of 5 levels
    ('configs/demo/biformer_maskrcnn_synthetic.py', 10),  # RPN cls + bbox maps of 5 levels
    ('configs/demo/biformer_fpn_synthetic.py', 1),  # Semantic FPN logits
    ('configs/demo/biformer_upernet_synthetic.py', 1),  # UPerNet logits (PPM pooling)
])
def test_full_model_exports_end_to_end(capsys, tmp_path, config, outputs):
    out, diffs = _run_export_tool(capsys, config, '--shape', '96', '128', '--check-shape', '97',
                                  '131', '--dynamic', '--out', str(tmp_path / 'model.onnx'))
    assert 'dynamic input dims: H in [' in out
    shapes = {(h, w) for h, w, _ in diffs}
    assert {(96, 128), (97, 131)} <= shapes and len(shapes) == 3  # + the traced size
    assert len(diffs) == 3 * outputs
    assert max(diffs.values()) <= RTOL, diffs
