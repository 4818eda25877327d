from .biformer import BiFormer
from .dualvit import DualViT
from .groupmixformer import GroupMixFormer
from .nat import DiNAT, NAT
from .slide import SlidePVT, SlideSwin

__all__ = ['BiFormer', 'DualViT', 'GroupMixFormer', 'NAT', 'DiNAT', 'SlideSwin', 'SlidePVT']
