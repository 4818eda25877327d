"""mmattn's subpackages import one another without a circle.

Every ``import`` statement of every module under mmattn/ counts, function-level ones included
(a lazy import still ties the two packages together). Modules collapse to their subpackage
(``mmattn.models.backbones.base`` -> ``mmattn.models``) or top-level module
(``mmattn.registry``); the package root ``mmattn/__init__.py`` only gathers the subpackages for
their registration side effects and is left out.
"""
import ast
import os.path as osp
from pathlib import Path

import mmattn

PACKAGE_DIR = Path(osp.dirname(mmattn.__file__))
SUBPACKAGES = ('models', 'converters', 'ops', 'utils', 'engine', 'plug', 'analysis', 'deploy')


def _module_name(path):
    parts = ('mmattn', ) + path.relative_to(PACKAGE_DIR).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _imported_modules(path):
    """The mmattn modules a file imports (absolute and relative, at any depth in the file)."""
    name = _module_name(path)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            # ``from pkg import sub`` imports the submodule pkg.sub when there is one
            found.update(f'{module}.{alias.name}' for alias in node.names)
    return {m for m in found if m == 'mmattn' or m.startswith('mmattn.')}


def _unit(module):
    """The subpackage or top-level module a module belongs to (None for the package root)."""
    parts = module.split('.')
    if len(parts) == 1:
        return None
    if parts[1] in SUBPACKAGES:
        return f'mmattn.{parts[1]}'
    return f'mmattn.{parts[1]}' if (PACKAGE_DIR / f'{parts[1]}.py').exists() else None


def package_graph():
    """{unit: {units it imports}} over mmattn's subpackages and top-level modules."""
    graph = {}
    for path in sorted(PACKAGE_DIR.rglob('*.py')):
        source = _unit(_module_name(path))
        if source is None:
            continue
        targets = {_unit(m) for m in _imported_modules(path)} - {None, source}
        graph.setdefault(source, set()).update(targets)
    return graph


def strongly_connected_components(graph):
    """Tarjan's algorithm: the components of mutually reachable nodes."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(set(graph) | {t for ts in graph.values() for t in ts}):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_function_level_and_relative_imports():
    graph = package_graph()
    # models import the loader (module level); utils look converters up inside functions
    assert 'mmattn.converters' in graph['mmattn.models']
    assert 'mmattn.converters' in graph['mmattn.utils']
    assert 'mmattn.registry' in graph['mmattn.ops']
    assert set(SUBPACKAGES) <= {unit.split('.')[1] for unit in graph}


def test_no_import_circle_between_subpackages():
    cycles = [sorted(c) for c in strongly_connected_components(package_graph()) if len(c) > 1]
    assert not cycles, f'import circles between mmattn subpackages: {cycles}'


def test_converters_never_import_models():
    graph = package_graph()
    reachable, todo = set(), ['mmattn.converters']
    while todo:
        for succ in graph.get(todo.pop(), ()):
            if succ not in reachable:
                reachable.add(succ)
                todo.append(succ)
    assert 'mmattn.models' not in reachable, graph['mmattn.converters']


def test_the_cycle_finder_finds_a_circle():
    graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
    assert sorted(map(sorted, strongly_connected_components(graph))) == [['a', 'b', 'c'], ['d']]
