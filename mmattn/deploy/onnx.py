"""ONNX export (torch.onnx's dynamo exporter) and the onnxruntime-vs-PyTorch check.

Shapes: with ``dynamic=True`` H and W of the input are symbolic. The graph is traced at a
*generic* size (:func:`generic_size`: every stage map odd, no stage-3/4 map a multiple of a
7-window), so that any shape-dependent Python in third-party code (mmcv's adaptive padding,
mmdet's Swin window crop) is traced on its general branch - the padding/cropping one, which is
exact (a no-op) for sizes that need no padding. Every export is checked in onnxruntime at more
than one size; a branch frozen for the traced size shows up there as a wrong shape or value.
"""
import contextlib
import math
import os.path as osp
from typing import NamedTuple

import numpy as np
import sympy
import torch
from torch import nn


def generic_size(n: int) -> int:
    """Smallest m >= n of the form 32a + 1 whose stride-4/8/16 maps (8a+1, 4a+1, 2a+1) are odd
    and whose stride-16/32 maps (2a+1, a+1) are not multiples of 7."""
    a = max(0, math.ceil((n - 1) / 32))
    while (2 * a + 1) % 7 == 0 or (a + 1) % 7 == 0:
        a += 1
    return 32 * a + 1


def flatten_outputs(outputs) -> list:
    """A tensor or nested tuples/lists of tensors as one flat list, in order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    flat = []
    for item in outputs:
        flat += flatten_outputs(item)
    return flat


class TensorMode(nn.Module):
    """A detector or segmentor as a plain ``inputs -> tuple of tensors`` module.

    The input is the data preprocessor's output (normalised, batched N x 3 x H x W); the outputs
    are the raw head maps, flattened (decoding, NMS and resizing are left to the caller):

    * one-stage detector (RetinaNet): ``model._forward`` = head outputs per level,
      ``cls_score`` levels first, then ``bbox_pred`` levels;
    * two-stage detector (Mask R-CNN): backbone + neck + RPN head outputs per level (the RoI
      stage needs the proposals' NMS in between, so it is not part of the graph);
    * segmentor (UPerNet, Semantic FPN): the decode head's logits at 1/4 of the input.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.two_stage = hasattr(model, 'rpn_head') and hasattr(model, 'roi_head')

    def output_names(self):
        model = self.model
        if self.two_stage:
            levels = len(model.rpn_head.prior_generator.strides)
            return [f'rpn_cls_{i}' for i in range(levels)] + \
                [f'rpn_bbox_{i}' for i in range(levels)]
        if hasattr(model, 'bbox_head'):
            levels = len(model.bbox_head.prior_generator.strides)
            return [f'cls_score_{i}' for i in range(levels)] + \
                [f'bbox_pred_{i}' for i in range(levels)]
        return ['seg_logits']

    def forward(self, inputs):
        if self.two_stage:
            outputs = self.model.rpn_head(self.model.extract_feat(inputs))
        else:
            outputs = self.model._forward(inputs)
        return tuple(flatten_outputs(outputs))


def _upsample_forward(self, x):
    """mmseg's ``Upsample.forward`` without ``int()`` of the map size, which would freeze the
    traced size into the graph; the same sizes for an integer ``scale_factor``."""
    from mmseg.models.utils import resize
    factor = self.scale_factor
    if self.size or not isinstance(factor, (int, float)) or factor != int(factor):
        return self._mmattn_forward(x)
    size = [t * int(factor) for t in x.shape[-2:]]
    return resize(x, size, None, self.mode, self.align_corners)


def _bin_average_matrix(size, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, size) matrix whose row i averages the input positions of adaptive pooling bin i:
    [floor(i * size / bins), ceil((i + 1) * size / bins)), PyTorch's adaptive pooling bins."""
    index = torch.arange(bins, device=like.device)
    start = torch.div(index * size, bins, rounding_mode='floor')
    end = torch.div((index + 1) * size + bins - 1, bins, rounding_mode='floor')
    position = torch.arange(size, device=like.device)[None]
    inside = (position >= start[:, None]) & (position < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def _adaptive_avg_pool2d_forward(self, x):
    """``nn.AdaptiveAvgPool2d`` as two averaging matmuls whose bins follow a symbolic map size.

    torch.onnx lowers adaptive pooling of a map whose size is symbolic to index arithmetic
    that onnxruntime rejects at other sizes (a Gather out of range: mmseg's PPM in UPerNet, whose
    pool scales are 1, 2, 3, 6); this form is the same average for every size.
    """
    out_h, out_w = (self.output_size, ) * 2 if isinstance(self.output_size, int) else \
        self.output_size
    if out_h is None or out_w is None:
        return self._mmattn_forward(x)
    rows = _bin_average_matrix(x.shape[-2], out_h, x)
    cols = _bin_average_matrix(x.shape[-1], out_w, x)
    return rows @ x @ cols.transpose(0, 1)


@contextlib.contextmanager
def _patched(cls, forward):
    cls._mmattn_forward = cls.forward
    cls.forward = forward
    try:
        yield
    finally:
        cls.forward = cls._mmattn_forward
        del cls._mmattn_forward


@contextlib.contextmanager
def _traceable_third_party():
    """Patch, for the duration of an export, the code that turns a symbolic size into a Python
    int or into indices onnxruntime rejects: mmseg's Upsample (Semantic FPN's scale heads) and
    ``nn.AdaptiveAvgPool2d`` (UPerNet's pyramid pooling)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(nn.AdaptiveAvgPool2d, _adaptive_avg_pool2d_forward))
        try:
            from mmseg.models.utils import Upsample
        except ImportError:
            Upsample = None
        if Upsample is not None:
            stack.enter_context(_patched(Upsample, _upsample_forward))
        yield


def export_onnx(module: nn.Module, example: torch.Tensor, path: str, dynamic: bool = True,
                output_names=None, opset: int = 18):
    """Export ``module(example)`` to ``path``; returns {'H': (lo, hi), 'W': (lo, hi)} of the
    dynamic input dims (hi None = unbounded), or {} for a fixed-shape export."""
    dynamic_shapes = None
    if dynamic:
        dim = torch.export.Dim.DYNAMIC
        dynamic_shapes = ({2: dim, 3: dim}, )
    with _traceable_third_party():
        program = torch.onnx.export(
            module.eval(), (example, ), path, dynamo=True, opset_version=opset,
            input_names=['input'], output_names=output_names, dynamic_shapes=dynamic_shapes,
            external_data=False, verbose=False)
    if not dynamic:
        return {}
    ep = program.exported_program
    user_inputs = set(ep.graph_signature.user_inputs)
    node = next(n for n in ep.graph.nodes if n.op == 'placeholder' and n.name in user_inputs)
    ranges = {}
    for name, size in zip('HW', node.meta['val'].shape[2:]):
        if isinstance(size, torch.SymInt):
            vr = ep.range_constraints[size.node.expr]
            upper = int(vr.upper) if isinstance(vr.upper, sympy.Integer) else None  # oo
            ranges[name] = (int(vr.lower), upper)
    return ranges


def onnxruntime_session(path: str, threads: int = 2):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def run_onnxruntime(session, x: torch.Tensor) -> list:
    return session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})


def max_diffs(reference: torch.Tensor, output) -> tuple:
    """(max abs difference, that divided by the largest |reference|)."""
    ref = reference.detach().cpu().double().numpy()
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        raise AssertionError(f'onnxruntime output shape {out.shape} != PyTorch {ref.shape}')
    diff = float(np.abs(ref - out).max()) if ref.size else 0.
    return diff, diff / max(float(np.abs(ref).max()) if ref.size else 0., 1e-12)


class OnnxCheck(NamedTuple):
    shape: tuple  # input H, W
    output: str
    abs_diff: float
    rel_diff: float


def export_and_check(module: nn.Module, path: str, shapes, dynamic: bool = True,
                     output_names=None, seed: int = 0, inputs=None):
    """Export ``module`` and compare onnxruntime with PyTorch.

    Dynamic: one export traced at the generic size at least as large as ``shapes[0]``, checked
    at every shape in ``shapes`` and at the traced size. Fixed: one export per shape.
    ``inputs`` optionally maps a shape to the input tensor to use (else seeded random).

    Returns (ranges of the dynamic dims, list of :class:`OnnxCheck`, traced shape).
    """
    shapes = [tuple(s) for s in shapes]
    gen = torch.Generator().manual_seed(seed)

    def make(shape):
        if inputs is not None and shape in inputs:
            return inputs[shape]
        return torch.randn(1, 3, *shape, generator=gen)

    checks, ranges, traced = [], {}, None
    if dynamic:
        traced = tuple(generic_size(n) for n in shapes[0])
        with torch.no_grad():
            ranges = export_onnx(module, make(traced), path, True, output_names)
        session = onnxruntime_session(path)
        runs = [(s, session) for s in shapes + ([traced] if traced not in shapes else [])]
    else:
        runs = []
        for shape in shapes:
            shape_path = path if len(shapes) == 1 else \
                f'{osp.splitext(path)[0]}_{shape[0]}x{shape[1]}.onnx'
            with torch.no_grad():
                export_onnx(module, make(shape), shape_path, False, output_names)
            runs.append((shape, onnxruntime_session(shape_path)))
    for shape, session in runs:
        x = make(shape)
        with torch.no_grad():
            reference = flatten_outputs(module(x))
        outputs = run_onnxruntime(session, x)
        names = output_names or [f'output{i}' for i in range(len(reference))]
        if len(outputs) != len(reference):
            raise AssertionError(f'onnxruntime gave {len(outputs)} outputs, PyTorch '
                                 f'{len(reference)}')
        for name, ref, out in zip(names, reference, outputs):
            checks.append(OnnxCheck(shape, name, *max_diffs(ref, out)))
    return ranges, checks, traced
