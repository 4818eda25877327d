from .biformer import BiFormer
from .nat import DiNAT, NAT

__all__ = ['BiFormer', 'NAT', 'DiNAT']
