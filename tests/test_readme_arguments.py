"""Every public constructor argument of every backbone and plug-in block is in a README table."""
import inspect
import os.path as osp
import re

import pytest

from mmattn import plug
from mmattn.models import backbones

README = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'README.md')

# class -> the README heading whose tables document its arguments
SECTIONS = {
    backbones.BiFormer: '### BiFormer arguments',
    backbones.NAT: '## NAT / DiNAT',
    backbones.DiNAT: '## NAT / DiNAT',
    backbones.SlideSwin: '### SlideSwin arguments',
    backbones.SlidePVT: '### SlidePVT arguments',
    backbones.GroupMixFormer: '### GroupMixFormer arguments',
    backbones.DualViT: '### DualViT arguments',
    **dict.fromkeys([plug.BiLevelRoutingAttention2d, plug.NeighborhoodAttention2d,
                     plug.SlideAttention2d, plug.GroupMixAttention2d, plug.DualAttention2d,
                     plug.AttentionSwap], '## Plug an attention into your own model'),
}


def table_names(heading):
    """Backticked names (``name`` or ``name=default``) in the table rows of a README section
    (from ``heading`` to the next heading of the same or a higher level)."""
    with open(README, encoding='utf-8') as f:
        lines = f.read().splitlines()
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip('#'))
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


def test_every_backbone_and_block_is_covered():
    assert {getattr(backbones, name) for name in backbones.__all__} <= set(SECTIONS)
    assert set(plug.PLUG_BLOCKS) <= set(SECTIONS)


@pytest.mark.parametrize('cls', list(SECTIONS), ids=lambda c: c.__name__)
def test_readme_documents_every_constructor_argument(cls):
    missing = [name for name in arguments(cls) if name not in table_names(SECTIONS[cls])]
    assert not missing, f'{cls.__name__}: arguments missing from README "{SECTIONS[cls]}"'
