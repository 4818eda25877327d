"""Bi-level routing attention: mmattn's core vs the official legacy formulation.

The anchor restates the official op's data movement (the official ops/bra_legacy.py): K/V
expanded to (N, R, R, T, 2C), ``torch.gather`` of the top-k regions, a permute into heads, an
explicit ``softmax(q k^T) v``. Both use the same region routing.
"""
from functools import partial

import torch

from mmattn.ops.routing import bi_level_routing_attention, route_regions

# (label, N, H, W, C, heads, n_win, topk): BiFormer-S BRA maps at 800x1344 (COCO, S=16) and
# 512x512 (ADE20K, S=8, batch 2), already padded to a multiple of n_win.
SIZES = [
    ('det stage 1 1x208x336x64', 1, 208, 336, 64, 2, 16, 1),
    ('det stage 2 1x112x176x128', 1, 112, 176, 128, 4, 16, 4),
    ('det stage 3 1x64x96x256', 1, 64, 96, 256, 8, 16, 16),
    ('seg stage 1 2x128x128x64', 2, 128, 128, 64, 2, 8, 1),
    ('seg stage 3 2x32x32x256', 2, 32, 32, 256, 8, 8, 16),
]
QUICK_SIZES = [('quick 1x16x24x32', 1, 16, 24, 32, 2, 4, 3)]


def gather_anchor(q, k, v, n_win, topk, num_heads):
    """The official expand + gather formulation; same arguments as the fast path."""
    n, h, w, c = q.shape
    rh, rw, r = h // n_win, w // n_win, n_win * n_win
    t, d, scale = rh * rw, c // num_heads, c**-0.5

    def regions(x):
        return x.reshape(n, n_win, rh, n_win, rw, -1).permute(0, 1, 3, 2, 4, 5).reshape(n, r, t, -1)

    q_r, kv = regions(q), regions(torch.cat([k, v], -1))
    idx = route_regions(q_r.mean(2), kv[..., :c].mean(2), topk, scale)
    kv_sel = torch.gather(kv.unsqueeze(1).expand(n, r, r, t, 2 * c), 2,
                          idx.view(n, r, topk, 1, 1).expand(n, r, topk, t, 2 * c))
    k_sel, v_sel = kv_sel.split(c, -1)
    k_sel = k_sel.reshape(n * r, topk, t, num_heads, d).permute(0, 3, 4, 1, 2).reshape(
        n * r, num_heads, d, topk * t)
    v_sel = v_sel.reshape(n * r, topk, t, num_heads, d).permute(0, 3, 1, 2, 4).reshape(
        n * r, num_heads, topk * t, d)
    q_h = q_r.reshape(n * r, t, num_heads, d).transpose(1, 2)
    out = torch.softmax((q_h * scale) @ k_sel, -1) @ v_sel
    out = out.transpose(1, 2).reshape(n, n_win, n_win, rh, rw, c).permute(0, 1, 3, 2, 4, 5)
    return out.reshape(n, h, w, c)


def fast(q, k, v, n_win, topk, num_heads):
    return bi_level_routing_attention(q, k, v, n_win, topk, num_heads)[0]


def _build(impl, size, device):
    _, n, h, w, c, heads, n_win, topk = size

    def build():
        gen = torch.Generator().manual_seed(0)
        inputs = [torch.randn(n, h, w, c, generator=gen).to(device).requires_grad_()
                  for _ in range(3)]
        return partial(impl, n_win=n_win, topk=topk, num_heads=heads), inputs

    return build


def cases(device='cpu', quick=False):
    out = []
    for size in QUICK_SIZES if quick else SIZES:
        for name, impl in (('mmattn', fast), ('official gather', gather_anchor)):
            op = f'BRA S={size[6]} topk={size[7]}'
            out.append(dict(op=op, impl=name, size=size[0], build=_build(impl, size, device)))
    return out
