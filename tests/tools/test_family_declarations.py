"""docs/adding_a_family.md: every family declares, beside its op and its backbone, what the tools
read, and the tools find every family from those declarations (no list of their own)."""
import inspect
import os.path as osp

import pytest
import torch
from helpers import REPO_ROOT, load_tool

import mmattn.models.backbones as backbones
from mmattn.analysis.models import default_backbones
from mmattn.deploy import build_tiny_backbone
from mmattn.ops import op_modules
from mmattn.ops.common import AttentionPanel, check_bench_case
from mmattn.registry import MODELS

BACKBONES = backbones.__all__
OPS = op_modules()


def test_the_checklist_exists():
    assert osp.isfile(osp.join(REPO_ROOT, 'docs', 'adding_a_family.md'))


@pytest.mark.parametrize('name', BACKBONES)
def test_backbone_declares_headline_and_test_arch(name):
    cls = getattr(backbones, name)
    assert MODELS.get(name) is cls
    assert cls.headline_arch in cls.arch_zoo
    assert isinstance(cls.test_arch, dict)
    model = build_tiny_backbone(name)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32))
    assert len(outs) == len(model.out_indices)


def test_backbone_families_have_converters():
    from mmattn.converters import CONVERTERS
    families = {getattr(backbones, name).family for name in BACKBONES} - {None}
    assert families <= set(CONVERTERS)


def test_tools_find_every_family():
    assert default_backbones()[:len(BACKBONES)] == [
        f'{name}:{getattr(backbones, name).headline_arch}' for name in BACKBONES]
    bench = load_tool('analysis/benchmark')
    assert bench.op_families() == list(OPS) == ['dual', 'group_mix', 'neighborhood', 'routing',
                                                'slide']
    from mmattn.analysis.flops import OP_HANDLES
    assert {f'{m.__name__}:{fn}' for m in OPS.values() for fn in m.OP_MACS} <= set(OP_HANDLES)


def test_every_plug_block_has_a_plug_spec_name():
    # each block declares its HOST+OP short name; the tools' specs list every block once
    from mmattn.analysis.models import PLUG_OPS, plug_specs
    from mmattn.plug import PLUG_BLOCKS
    names = [cls.short_name for cls in PLUG_BLOCKS]
    assert all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)
    assert sorted(PLUG_OPS.values()) == sorted(cls.__name__ for cls in PLUG_BLOCKS)
    assert {spec.partition('+')[2] for spec in plug_specs()} - {''} == set(names)


@pytest.mark.parametrize('op', list(OPS))
def test_op_module_declares_what_the_tools_read(op):
    module = OPS[op]
    for fn_name, formula in module.OP_MACS.items():
        assert callable(getattr(module, fn_name)) and callable(formula)
    assert module.ATTENTION_PANELS
    for class_name, panels in module.ATTENTION_PANELS.items():
        # the panels draw a module of this op file, registered like every op module
        assert MODELS.get(class_name) is getattr(module, class_name)
        assert panels.__module__ == module.__name__
    cases = module.bench_cases(quick=True)
    assert cases
    for case in cases:
        check_bench_case(module.__name__, case)
    fn, inputs = cases[0]['build']()
    assert isinstance(fn(*inputs), torch.Tensor)


@pytest.mark.parametrize('op', list(OPS))
def test_references_take_the_functional_ops_arguments(op):
    module = OPS[op]
    pairs = [(name[:-len('_reference')], name) for name in vars(module)
             if name.endswith('_reference') and name[:-len('_reference')] in vars(module)]
    for fast_name, ref_name in pairs:
        fast = inspect.signature(getattr(module, fast_name)).parameters
        ref = inspect.signature(getattr(module, ref_name)).parameters
        shared = [p for p in ref if p != 'return_weights']
        assert shared == list(fast)[:len(shared)], (fast_name, ref_name)
        assert all(ref[p].default == fast[p].default for p in shared), (fast_name, ref_name)


def test_panels_return_attention_panels():
    # one family end to end through the tool: the declared panels are AttentionPanel tuples
    vis = load_tool('analysis/vis_attention')
    model = vis.build_backbone('NAT:mini').eval()
    layers = vis.attention_layers(model, vis.to_tensor(vis.load_image(None, (64, 64))))
    layer = next(lay for lay in layers.values() if vis.panel_kind(lay.module))
    panels = vis.draw_panels(layer, (10, 20), (64, 64), layers)
    assert panels and all(isinstance(p, AttentionPanel) for p in panels)
