from .biformer import BiFormer

__all__ = ['BiFormer']
