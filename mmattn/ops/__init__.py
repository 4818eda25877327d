from .neighborhood import (NeighborhoodAttention2d, neighborhood_attention_2d,
                           neighborhood_attention_2d_reference)
from .routing import (BiLevelRoutingAttention, GlobalAttentionLePE, bi_level_routing_attention,
                      bra_reference, global_attention_lepe_reference)

__all__ = [
    'BiLevelRoutingAttention', 'GlobalAttentionLePE', 'bi_level_routing_attention',
    'bra_reference', 'global_attention_lepe_reference', 'NeighborhoodAttention2d',
    'neighborhood_attention_2d', 'neighborhood_attention_2d_reference'
]
