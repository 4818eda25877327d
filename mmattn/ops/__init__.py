from .dual import (DualPathAttention, MergeAttention, SemanticTokenInit, dual_path_attention,
                   dual_path_attention_reference, merge_attention, merge_attention_reference,
                   multi_head_attention, multi_head_attention_reference, semantic_init,
                   semantic_init_reference)
from .group_mix import GroupMixAttention, group_mix_attention, group_mix_attention_reference
from .neighborhood import (NeighborhoodAttention, neighborhood_attention_2d,
                           neighborhood_attention_2d_reference)
from .routing import (BiLevelRoutingAttention, GlobalAttentionLePE, bi_level_routing_attention,
                      bi_level_routing_attention_reference, bra, bra_reference,
                      global_attention_lepe, global_attention_lepe_reference)
from .registry import OpSpec, op_specs, register_op
from .slide import SlideAttention, slide_attention, slide_attention_reference


__all__ = [
    'DualPathAttention', 'MergeAttention', 'SemanticTokenInit', 'dual_path_attention',
    'dual_path_attention_reference', 'merge_attention', 'merge_attention_reference',
    'multi_head_attention', 'multi_head_attention_reference', 'semantic_init',
    'semantic_init_reference', 'BiLevelRoutingAttention', 'GlobalAttentionLePE',
    'bi_level_routing_attention', 'bi_level_routing_attention_reference', 'bra', 'bra_reference',
    'global_attention_lepe', 'global_attention_lepe_reference', 'NeighborhoodAttention',
    'neighborhood_attention_2d', 'neighborhood_attention_2d_reference', 'GroupMixAttention',
    'group_mix_attention', 'group_mix_attention_reference', 'SlideAttention', 'slide_attention',
    'slide_attention_reference', 'OpSpec', 'op_specs', 'register_op'
]
