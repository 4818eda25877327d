"""docs/adding_a_family.md: every family declares, beside its op and its backbone, what the tools
read, and the tools find every family from those declarations (no list of their own); no
source, test or script of the repository writes out a list of the families or blocks."""
import ast
import glob
import inspect
import os.path as osp
import re

import pytest
import torch
from helpers import REPO_ROOT, load_tool

import mmattn.models.backbones as backbones
from mmattn.analysis.models import default_backbones
from mmattn.deploy import build_tiny_backbone
from mmattn.ops import op_specs
from mmattn.ops.common import AttentionPanel, check_bench_case
from mmattn.registry import MODELS

BACKBONES = backbones.__all__
OPS = op_specs()


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
    assert bench.op_families() == list(OPS)
    # the op each plug-in block wraps lives in an op module the tools find
    from mmattn.plug import PLUG_BLOCKS
    assert {type(cls(64).attn).__module__ for cls in PLUG_BLOCKS} <= {
        spec.module for spec in OPS.values()}
    from mmattn.analysis.flops import OP_HANDLES
    assert {t for spec in OPS.values() for t in spec.mac_handles()} <= set(OP_HANDLES)


def test_every_plug_block_has_a_plug_spec_name():
    # each block declares its HOST+OP short name; the tools' specs list every block once
    from mmattn.analysis.models import PLUG_OPS, plug_specs
    from mmattn.plug import PLUG_BLOCKS
    names = [cls.short_name for cls in PLUG_BLOCKS]
    assert all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)
    assert sorted(PLUG_OPS.values()) == sorted(cls.__name__ for cls in PLUG_BLOCKS)
    assert {spec.partition('+')[2] for spec in plug_specs()} - {''} == set(names)


@pytest.mark.parametrize('op', list(OPS))
def test_op_declares_what_the_tools_read(op):
    spec = OPS[op]
    module = spec.op_module()
    for fn_name, formula in spec.macs.items():
        assert callable(getattr(module, fn_name)) and callable(formula)
    panels = spec.attention_panels()
    assert panels
    for class_name, draw in panels.items():
        # the panels draw a module of the op file, registered like every op module, and live
        # in the op's tools module, not in the op file
        assert MODELS.get(class_name) is getattr(module, class_name)
        assert draw.__module__ == spec.tools != spec.module
    cases = spec.bench_cases(quick=True)
    assert cases
    for case in cases:
        check_bench_case(spec.tools, case)
    fn, inputs = cases[0]['build']()
    assert isinstance(fn(*inputs), torch.Tensor)


def test_every_reference_is_a_functional_ops():
    # one reference style: each *_reference of an op file is declared as the reference of a
    # functional op of that file (the signature check below), none takes a module or state dict
    for spec in OPS.values():
        module = spec.op_module()
        found = {name for name, fn in vars(module).items() if name.endswith('_reference')
                 and callable(fn) and getattr(fn, '__module__', None) == spec.module}
        assert found == {fn.__name__ for fn in spec.references.values()}, spec.module
        for fn in spec.references.values():
            assert not {'module', 'state'} & set(inspect.signature(fn).parameters), fn


def test_op_files_hold_no_tool_code():
    # an op file reads op -> module -> reference -> declaration: the benchmark's formulations
    # and cases and the attention pictures live in the op's tools module
    for spec in OPS.values():
        names = vars(spec.op_module())
        assert not {'bench_cases', 'ATTENTION_PANELS', 'OP_MACS'} & set(names), spec.module
        assert not [n for n in names if n.startswith(('BENCH_', '_bench'))], spec.module


@pytest.mark.parametrize('op', list(OPS))
def test_references_take_the_functional_ops_arguments(op):
    spec = OPS[op]
    for fast_name, fast_fn in spec.functional_ops().items():
        reference = spec.references[fast_name]
        assert reference.__name__ == f'{fast_name}_reference'
        assert getattr(spec.op_module(), reference.__name__) is reference
        fast = inspect.signature(fast_fn).parameters
        ref = inspect.signature(reference).parameters
        shared = [p for p in ref if p != 'return_weights']
        assert shared == list(fast)[:len(shared)], fast_name
        assert all(ref[p].default == fast[p].default for p in shared), fast_name


def test_panels_return_attention_panels():
    # one family end to end through the tool: the declared panels are AttentionPanel tuples
    vis = load_tool('analysis/vis_attention')
    model = vis.build_backbone('NAT:mini').eval()
    layers = vis.attention_layers(model, vis.to_tensor(vis.load_image(None, (64, 64))))
    layer = next(lay for lay in layers.values() if vis.panel_kind(lay.module))
    panels = vis.draw_panels(layer, (10, 20), (64, 64), layers)
    assert panels and all(isinstance(p, AttentionPanel) for p in panels)


# ---------------------------------------------------------------- no hand-written family lists

# The one place each list is written: the exports (``__all__``) and the blocks' tuple.
HOMES = {('mmattn/plug/blocks.py', 'PLUG_BLOCKS')}
# Files whose per-family tables are not yet declared beside the families, with the reason.
NOT_YET = {
    'tests/tools/test_get_flops.py': 'PAPER: the authors\' parameter and MAC counts of each '
    'family\'s variants, to move to the backbone classes',
}
SHORTEST_LIST = 3  # names of one kind written together that make a list


def _name_groups():
    from mmattn.plug import PLUG_BLOCKS
    return {
        'backbone classes': set(BACKBONES),
        'plug-in blocks': {cls.__name__ for cls in PLUG_BLOCKS},
        'plug-in short names': {cls.short_name for cls in PLUG_BLOCKS},
        'op modules': set(OPS),
        'op classes': {name for spec in OPS.values() for name in spec.attention_panels()},
        'converters': {getattr(backbones, name).family for name in BACKBONES} - {None},
    }


def _element_name(node):
    """The name an element of a literal stands for: 'BiFormer', BiFormer, backbones.BiFormer,
    'BiFormer:tiny', or the first item of a row ('BiFormer', 1, [...])."""
    if isinstance(node, (ast.Tuple, ast.List)) and node.elts:
        node = node.elts[0]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.split(':')[0]
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _home(node, path):
    targets = [t.id for t in getattr(node, 'targets', []) if isinstance(t, ast.Name)]
    return '__all__' in targets or any((path, t) in HOMES for t in targets)


def _python_lists(path, groups):
    tree = ast.parse(open(osp.join(REPO_ROOT, path)).read())
    docstrings = {id(body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  for body in [node.body] if body and isinstance(body[0], ast.Expr)}
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Assign)
            and _home(node, path) for n in ast.walk(node.value)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
            elements = node.keys if isinstance(node, ast.Dict) else node.elts
            names = {_element_name(e) for e in elements if e is not None}
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings):
            names = set(re.findall(r'\w+', node.value))  # a message listing classes
            names -= groups['plug-in short names'] | groups['op modules']  # plain words
        else:
            continue
        for kind, group in groups.items():
            if len(names & group) >= SHORTEST_LIST:
                found.append(f'{path}:{node.lineno}: {kind} {sorted(names & group)}')
    return found


def _shell_lists(path, groups):
    found = []
    for number, line in enumerate(open(osp.join(REPO_ROOT, path)), 1):
        names = set(re.findall(r'\w+', line.split('#')[0]))
        for kind, group in groups.items():
            if len(names & group) >= SHORTEST_LIST:
                found.append(f'{path}:{number}: {kind} {sorted(names & group)}')
    return found


def test_no_hand_written_list_of_families_or_blocks():
    """Tools, tests and scripts iterate ``backbones.__all__``, ``PLUG_BLOCKS`` and
    ``op_specs()``; a literal with three or more names of one kind (backbone classes, blocks,
    their short names, op modules, op classes, converters), or a message or script line
    naming as many, is a list a sixth family would have to be added to by hand."""
    groups = _name_groups()
    found = []
    for folder in ('mmattn', 'tools', 'tests', 'configs'):
        for path in sorted(glob.glob(osp.join(REPO_ROOT, folder, '**', '*.py'), recursive=True)):
            path = osp.relpath(path, REPO_ROOT)
            if path not in NOT_YET:
                found += _python_lists(path, groups)
    for path in sorted(glob.glob(osp.join(REPO_ROOT, '**', '*.sh'), recursive=True)):
        found += _shell_lists(osp.relpath(path, REPO_ROOT), groups)
    assert not found, 'hand-written lists of families or blocks:\n' + '\n'.join(found)


def test_no_code_special_cases_a_family_by_name():
    """mmattn and its tools read what differs between families from the classes (e.g. a
    block's ``fixed_heads``), not from comparisons with a class name."""
    groups = _name_groups()
    names = groups['backbone classes'] | groups['plug-in blocks'] | groups['op classes']
    found = []
    for folder in ('mmattn', 'tools'):
        for path in sorted(glob.glob(osp.join(REPO_ROOT, folder, '**', '*.py'), recursive=True)):
            tree = ast.parse(open(path).read())
            found += [f'{osp.relpath(path, REPO_ROOT)}:{node.lineno}: {ast.unparse(node)}'
                      for node in ast.walk(tree) if isinstance(node, ast.Compare)
                      and any(isinstance(c, ast.Constant) and c.value in names
                              for c in ast.walk(node))]
    assert not found, 'comparisons with a family or block name:\n' + '\n'.join(found)
