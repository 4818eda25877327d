"""Deployment helpers: ONNX export with an onnxruntime check, torch.compile checks.

Used by ``tools/deploy/export_onnx.py``, ``tools/analysis/benchmark.py --compile`` and the tests.
"""
from .onnx import (OnnxCheck, TensorMode, export_onnx, export_and_check, flatten_outputs,
                   generic_size, max_diffs, onnxruntime_session, run_onnxruntime)
from .tiny import TINY_BACKBONES, build_tiny_backbone

__all__ = [
    'OnnxCheck', 'TensorMode', 'export_onnx', 'export_and_check', 'flatten_outputs',
    'generic_size', 'max_diffs', 'onnxruntime_session', 'run_onnxruntime', 'TINY_BACKBONES',
    'build_tiny_backbone'
]
