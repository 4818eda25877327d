import importlib
import pkgutil

from .dual import (DualPathAttention, MergeAttention, SemanticTokenInit,
                   dual_path_attention_reference, merge_attention_reference,
                   multi_head_attention, multi_head_attention_reference,
                   semantic_init_reference)
from .group_mix import GroupMixAttention, group_mix_attention_reference
from .neighborhood import (NeighborhoodAttention, neighborhood_attention_2d,
                           neighborhood_attention_2d_reference)
from .routing import (BiLevelRoutingAttention, GlobalAttentionLePE, bi_level_routing_attention,
                      bi_level_routing_attention_reference, bra_reference,
                      global_attention_lepe_reference)
from .slide import SlideAttention, slide_attention, slide_attention_reference


def op_modules() -> dict:
    """Every op module of this package by short name ('routing', 'neighborhood', ...): the
    modules that declare ``bench_cases`` (and ``OP_MACS``, ``ATTENTION_PANELS``; see
    :mod:`mmattn.ops.common`). The tools find the families here, with no list of their own."""
    modules = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f'{__name__}.{info.name}')
        if hasattr(module, 'bench_cases'):
            modules[info.name] = module
    return dict(sorted(modules.items()))


__all__ = [
    'DualPathAttention', 'MergeAttention', 'SemanticTokenInit', 'dual_path_attention_reference',
    'merge_attention_reference', 'multi_head_attention', 'multi_head_attention_reference',
    'semantic_init_reference', 'BiLevelRoutingAttention', 'GlobalAttentionLePE',
    'bi_level_routing_attention', 'bi_level_routing_attention_reference', 'bra_reference',
    'global_attention_lepe_reference', 'NeighborhoodAttention', 'neighborhood_attention_2d',
    'neighborhood_attention_2d_reference', 'GroupMixAttention', 'group_mix_attention_reference',
    'SlideAttention', 'slide_attention', 'slide_attention_reference', 'op_modules'
]
