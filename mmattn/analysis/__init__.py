"""Cost analysis shared by tools/analysis (FLOP handles, backbone presets)."""
from .flops import Complexity, MacCounter, measure, measure_backbone, register_op_handle

__all__ = ['Complexity', 'MacCounter', 'measure', 'measure_backbone', 'register_op_handle']
