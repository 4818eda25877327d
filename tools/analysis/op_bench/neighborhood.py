"""Neighborhood attention (NATTEN semantics, kernel 7, rpb): fast path vs unfold vs dense SDPA.

- mmattn: :func:`mmattn.ops.neighborhood.neighborhood_attention_2d` (tiles + chunked matmuls).
- unfold: ``F.unfold`` of K and V over every window start, then each query's border-clamped
  window is picked: K*K copies of K and V, the way the pre-NATTEN pure-PyTorch NAT code worked.
- dense: ``F.scaled_dot_product_attention`` over all H*W keys with an additive (H*W)^2 bias per
  head (rpb on the neighbours, -inf elsewhere); left out where it would need more than
  ``DENSE_LIMIT_BYTES``.
"""
from functools import partial

import torch
import torch.nn.functional as F

from mmattn.ops.neighborhood import neighborhood_attention_2d

KERNEL_SIZE = 7
HEAD_DIM = 32
SIZES = [(1, 64, 56, 56), (1, 64, 200, 304), (1, 128, 100, 152)]  # 200x304: det stage 1
DILATIONS = (1, 4)
QUICK_SIZES = [(1, 64, 21, 23)]
QUICK_DILATIONS = (1, 2)
DENSE_LIMIT_BYTES = 4 * 2**30


def _axis_windows(length, kernel_size, dilation):
    """Per position: window start (original coordinates) and the K rpb indices, with NATTEN's
    dilation groups and rpb indexing."""
    i = torch.arange(length)
    g, p = i % dilation, i // dilation
    n = (length - g + dilation - 1) // dilation
    s = torch.minimum((p - kernel_size // 2).clamp(min=0), n - kernel_size)
    offsets = s[:, None] + torch.arange(kernel_size) - p[:, None] + kernel_size - 1
    return g + dilation * s, offsets


def unfold_neighborhood_attention_2d(q, k, v, rpb, kernel_size, dilation=1, scale=None):
    """The im2col anchor; (B, H, W, heads, head_dim) layout like the fast path."""
    b, h, w, heads, dim = q.shape
    ks = kernel_size
    scale = dim**-0.5 if scale is None else scale
    start_r, off_r = (t.to(q.device) for t in _axis_windows(h, ks, dilation))
    start_c, off_c = (t.to(q.device) for t in _axis_windows(w, ks, dilation))

    def windows(x):  # -> (B, heads, D, K*K, H, W)
        x = x.permute(0, 3, 4, 1, 2).reshape(b, heads * dim, h, w)
        x = F.unfold(x, ks, dilation=dilation)
        x = x.view(b, heads, dim, ks * ks, h - (ks - 1) * dilation, w - (ks - 1) * dilation)
        return x.index_select(4, start_r).index_select(5, start_c)

    logits = torch.einsum('bhdij,bhdkij->bhijk', q.permute(0, 3, 4, 1, 2) * scale, windows(k))
    logits = logits + rpb[:, off_r[:, None, :, None], off_c[None, :, None, :]].reshape(
        heads, h, w, ks * ks)
    out = torch.einsum('bhijk,bhdkij->bhijd', logits.softmax(-1), windows(v))
    return out.permute(0, 2, 3, 1, 4)


def dense_neighborhood_attention_2d(q, k, v, rpb, kernel_size, dilation=1, scale=None):
    """Full attention with an additive (heads, H*W, H*W) neighbourhood bias, through SDPA."""
    b, h, w, heads, dim = q.shape
    ks = kernel_size
    start_r, off_r = _axis_windows(h, ks, dilation)
    start_c, off_c = _axis_windows(w, ks, dilation)
    rows = start_r[:, None] + dilation * torch.arange(ks)  # (H, K) neighbour rows
    cols = start_c[:, None] + dilation * torch.arange(ks)
    keys = (rows[:, None, :, None] * w + cols[None, :, None, :]).reshape(h * w, ks * ks)
    values = rpb[:, off_r[:, None, :, None], off_c[None, :, None, :]].reshape(
        heads, h * w, ks * ks)
    bias = q.new_full((heads, h * w, h * w), float('-inf')).scatter(
        2, keys.to(q.device).expand(heads, -1, -1), values)
    qf, kf, vf = (t.reshape(b, h * w, heads, dim).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(qf, kf, vf, attn_mask=bias, scale=scale)
    return out.transpose(1, 2).reshape(b, h, w, heads, dim)


def fast(q, k, v, rpb, kernel_size, dilation=1):
    return neighborhood_attention_2d(q, k, v, kernel_size, dilation, rpb)


def dense_bytes(b, heads, h, w, itemsize=4):
    """Rough training memory of the dense path: the bias plus 4 score matrices."""
    return (1 + 4 * b) * heads * (h * w)**2 * itemsize


def _build(impl, size, dilation, device):
    b, c, h, w = size

    def build():
        gen = torch.Generator().manual_seed(0)
        heads = c // HEAD_DIM
        q, k, v = (torch.randn(b, h, w, heads, HEAD_DIM, generator=gen) for _ in range(3))
        rpb = torch.randn(heads, 2 * KERNEL_SIZE - 1, 2 * KERNEL_SIZE - 1, generator=gen) * .02
        inputs = [t.to(device).requires_grad_() for t in (q, k, v, rpb)]
        return partial(impl, kernel_size=KERNEL_SIZE, dilation=dilation), inputs

    return build


def cases(device='cpu', quick=False):
    out = []
    for size in QUICK_SIZES if quick else SIZES:
        b, c, h, w = size
        for dilation in QUICK_DILATIONS if quick else DILATIONS:
            impls = [('mmattn', fast), ('unfold', unfold_neighborhood_attention_2d)]
            if dense_bytes(b, c // HEAD_DIM, h, w) <= DENSE_LIMIT_BYTES:
                impls.append(('dense SDPA', dense_neighborhood_attention_2d))
            for name, impl in impls:
                out.append(dict(op=f'NA k={KERNEL_SIZE} d={dilation}', impl=name,
                                size='x'.join(map(str, size)),
                                build=_build(impl, size, dilation, device)))
    return out
