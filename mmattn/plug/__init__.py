"""Plug-and-play attention: every mmattn op as an NCHW block for any host (mmcv plugin
contract), and :class:`AttentionSwap` for stock transformer backbones."""
from .blocks import (PLUG_BLOCKS, AttentionBlock2d, BiLevelRoutingAttention2d, DualAttention2d,
                     GroupMixAttention2d, NeighborhoodAttention2d, SlideAttention2d)
from .swap import HOSTS, AttentionSwap

__all__ = [
    'PLUG_BLOCKS', 'AttentionBlock2d', 'BiLevelRoutingAttention2d', 'NeighborhoodAttention2d',
    'SlideAttention2d', 'GroupMixAttention2d', 'DualAttention2d', 'AttentionSwap', 'HOSTS'
]
