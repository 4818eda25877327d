"""Depthwise convolution ("same" zero padding, stride 1) with a fast CPU weight gradient.

The forward is ``F.conv2d(x, weight, bias, padding=k // 2, groups=C)``, unchanged. The backward
differs on CPU for kernels larger than 3x3: oneDNN's depthwise backward computes the weight and
bias gradients of those kernels slowly. Measured on a 2-core AMD EPYC VM (CPU, 2026-12-03; fp32,
one 64-channel 208x304 map, the LePE of BiFormer-S's first stage at 800x1216):
5x5 weight gradient 38 ms (NCHW) / 66 ms (channels-last) against 3.9 ms for the input gradient
and 6 ms for the forward; 3x3 kernels take 2-4 ms and keep the native backward.

The weight gradient of a depthwise convolution is itself a depthwise correlation, of the padded
input with the output gradient::

    dW[c, u, t] = sum_{n, y, x} g[n, c, y, x] * xp[n, c, y + u, x + t]

so it is computed per image as one grouped ``conv2d`` whose "kernel" is the output gradient
(one group per channel): 10 ms in the case above. The
input gradient stays oneDNN's (``convolution_backward`` asked for it alone), the bias gradient
is a sum. Gradients equal the native ones up to summation order (tests/ops/test_depthwise.py
checks both against float64 autograd of ``F.conv2d``).

Used by BiFormer's LePE (5x5) and GroupMixFormer's aggregators and CRPE (3x3 to 7x7). Tracing,
torch.compile, ONNX export, inference and non-CPU devices take plain ``F.conv2d``.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

NATIVE_MAX_KERNEL = 3  # kernels up to this size keep oneDNN's own (fast) backward


def _contiguous_nchw(x: Tensor) -> Tensor:
    """``x.contiguous()``, the same values. A channels-last map is transposed image by image
    as one 2-D (H*W, C) -> (C, H*W) copy, which PyTorch runs cache-blocked: on a 64x208x304
    map 10-11 ms against 30-44 ms for the 4-D permuted copy (CPU time, one thread, the 2-core
    AMD EPYC of docs/speed.md, 2026-12)."""
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous()
    n, c, h, w = x.shape
    out = x.new_empty(n, c, h * w)
    for i in range(n):
        out[i].copy_(x[i].permute(1, 2, 0).reshape(h * w, c).t())
    return out.view(n, c, h, w)


class _DepthwiseConv2dFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        n, c = x.shape[:2]
        pad = weight.shape[-1] // 2
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], c,
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            # dense NCHW operands and one conv per image: on channels-last operands, or with
            # the batch folded into the groups, oneDNN is several times slower
            xp = F.pad(_contiguous_nchw(x), (pad, pad, pad, pad))
            grad_out = _contiguous_nchw(grad_out)
            grad_w = sum(F.conv2d(xp[i:i + 1], grad_out[i:i + 1].transpose(0, 1), groups=c)
                         for i in range(n))
            grad_w = grad_w.view(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b


def depthwise_conv2d(x: Tensor, weight: Tensor, bias: Tensor = None) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=k // 2, groups=C)`` for an odd k x k kernel.

    Args:
        x (Tensor): (N, C, H, W), any memory format.
        weight (Tensor): (C, 1, k, k), k odd.
        bias (Tensor, optional): (C,).

    Returns:
        Tensor: (N, C, H, W).
    """
    ks = weight.shape[-1]
    if ks % 2 == 0 or weight.shape[-2] != ks or weight.shape[:2] != (x.shape[1], 1):
        raise ValueError(f'depthwise_conv2d needs a (C={x.shape[1]}, 1, k, k) weight with odd '
                         f'k, got {tuple(weight.shape)}')
    fast_grad = (ks > NATIVE_MAX_KERNEL and x.device.type == 'cpu' and torch.is_grad_enabled()
                 and (x.requires_grad or weight.requires_grad)
                 and not torch.jit.is_tracing() and not torch.compiler.is_compiling())
    if not fast_grad:
        return F.conv2d(x, weight, bias, padding=ks // 2, groups=x.shape[1])
    return _DepthwiseConv2dFunction.apply(x, weight, bias)


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(C, C, k, padding=k // 2, groups=C)`` (same parameters, names and init)
    running :func:`depthwise_conv2d`."""

    def __init__(self, channels: int, kernel_size: int, bias: bool = True):
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2,
                         groups=channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return depthwise_conv2d(x, self.weight, self.bias)
