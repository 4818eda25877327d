from .biformer import BiFormer
from .groupmixformer import GroupMixFormer
from .nat import DiNAT, NAT

__all__ = ['BiFormer', 'GroupMixFormer', 'NAT', 'DiNAT']
