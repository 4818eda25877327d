from .mlp import Mlp
from .norm import LayerNorm2d
from .sync_bn import CPUSyncBatchNorm

__all__ = ['LayerNorm2d', 'CPUSyncBatchNorm', 'Mlp']
