"""Every constructor argument of every backbone and plug-in block is in its docs page's table.

Each class names its page (``docs_page``, relative to ``docs/``); the page has a heading
``## <ClassName> arguments`` (any level) whose tables name every argument in backticks.
"""
import inspect
import os.path as osp
import re

import pytest

from mmattn import plug
from mmattn.models import backbones

DOCS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'docs')

CLASSES = [getattr(backbones, name) for name in backbones.__all__] + \
    list(plug.PLUG_BLOCKS) + [plug.AttentionSwap]


def table_names(page, class_name):
    """Backticked names (``name`` or ``name=default``) in the table rows of the section
    ``#+ <class_name> arguments`` of ``docs/<page>`` (to the next heading of the same or a
    higher level)."""
    path = osp.join(DOCS, page)
    assert osp.isfile(path), f'{class_name}.docs_page: no file docs/{page}'
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    heading = re.compile(rf'^(#+) {re.escape(class_name)} arguments\s*$')
    starts = [i for i, line in enumerate(lines) if heading.match(line)]
    assert len(starts) == 1, f'docs/{page}: expected one heading "## {class_name} arguments"'
    start = starts[0]
    level = len(heading.match(lines[start]).group(1))
    names = set()
    for line in lines[start + 1:]:
        match = re.match(r'^(#+) ', line)
        if match and len(match.group(1)) <= level:
            break
        if line.startswith('|'):
            names.update(re.findall(r'`([A-Za-z_]\w*)[^`]*`', line))
    return names


def arguments(cls):
    params = inspect.signature(cls.__init__).parameters.values()
    names = [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    return names[1:]  # self


@pytest.mark.parametrize('cls', CLASSES, ids=lambda c: c.__name__)
def test_class_names_its_docs_page(cls):
    assert isinstance(cls.docs_page, str) and cls.docs_page.endswith('.md'), \
        f'{cls.__name__} needs a docs_page (its page under docs/)'


@pytest.mark.parametrize('cls', CLASSES, ids=lambda c: c.__name__)
def test_docs_document_every_constructor_argument(cls):
    names = table_names(cls.docs_page, cls.__name__)
    missing = [name for name in arguments(cls) if name not in names]
    assert not missing, (f'{cls.__name__}: arguments missing from docs/{cls.docs_page} '
                         f'"{cls.__name__} arguments": {missing}')
