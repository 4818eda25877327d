"""What the analysis tools read of bi-level routing attention (:mod:`mmattn.ops.routing`).

* :func:`bi_level_routing_attention_gather` and :func:`bi_level_routing_attention_nchw`: the
  core with the data movement of the official legacy op and of its refactored NCHW op, the
  benchmark's anchors (same arguments and outputs as
  :func:`~mmattn.ops.routing.bi_level_routing_attention`);
* ``ATTENTION_PANELS``: what ``tools/analysis/vis_attention.py`` draws of a BRA layer;
* :func:`bench_cases`: the cases of ``tools/analysis/benchmark.py --ops routing``.
"""
import math

import torch
import torch.nn.functional as F

from mmattn.ops.common import AttentionPanel
from mmattn.ops.routing import (ROUTED_CHUNK_BYTES, _check_routing_args, bi_level_routing_attention,
                                bra_reference, route_regions)

# ---------------------------------------------- official formulations (benchmark anchors)


def bi_level_routing_attention_gather(q, k, v, n_win, topk, num_heads, scale=None):
    """:func:`bi_level_routing_attention` (same arguments and outputs) with the official op's
    data movement (the official ops/bra_legacy.py): K/V expanded to (N, R, R, T, 2C),
    ``torch.gather`` of the top-k regions, a permute into heads, an explicit
    ``softmax(q k^T) v``; the same region routing."""
    n, h, w, c = q.shape
    _check_routing_args(h, w, n_win, topk, c, num_heads)
    rh, rw, r = h // n_win, w // n_win, n_win * n_win
    t, d = rh * rw, c // num_heads
    scale = c**-0.5 if scale is None else scale

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
    return out.reshape(n, h, w, c), idx


def bi_level_routing_attention_nchw(q, k, v, n_win, topk, num_heads, scale=None):
    """:func:`bi_level_routing_attention` (same arguments and outputs) with the data movement of
    the official *refactored* op (the official ops/bra_nchw.py, whose core is
    ``regional_routing_attention_torch`` in ops/torch/rrsda.py), which no released det/seg
    model uses: NCHW maps (here the NHWC inputs viewed as channels-last NCHW, the layout that op
    asks for), region means by ``avg_pool2d``, routing on the unscaled affinity (a positive
    scale does not change the top-k), every map rearranged to (N, heads, regions, tokens,
    head_dim), K and V each gathered separately by ``torch.gather`` from a view expanded over
    the query regions, an explicit ``softmax(q k^T) v``, and the result rearranged back to
    NCHW. (The official layer pads after its qkv projection and pools without the padding,
    unlike the legacy one; on region-divisible maps, all this function takes, the two agree.)
    """
    n, h, w, c = q.shape
    _check_routing_args(h, w, n_win, topk, c, num_heads)
    rh, rw, r = h // n_win, w // n_win, n_win * n_win
    t, d = rh * rw, c // num_heads
    scale = c**-0.5 if scale is None else scale
    q, k, v = (x.permute(0, 3, 1, 2) for x in (q, k, v))  # (N, C, H, W), channels-last strides

    q_mean, k_mean = (F.avg_pool2d(x.detach(), (rh, rw)).flatten(2) for x in (q, k))
    idx = (q_mean.transpose(1, 2) @ k_mean).topk(topk, dim=-1).indices  # (N, R, topk)

    def heads_regions(x):  # (N, C, H, W) -> (N, heads, R, T, d): regions and tokens row-major
        x = x.reshape(n, num_heads, d, n_win, rh, n_win, rw).permute(0, 1, 3, 5, 4, 6, 2)
        return x.reshape(n, num_heads, r, t, d)

    index = idx.view(n, 1, r, topk, 1, 1).expand(n, num_heads, r, topk, t, d)

    def gather(x):  # (N, heads, R, T, d) -> the routed regions of each query region
        x = x.unsqueeze(2).expand(n, num_heads, r, r, t, d)
        return torch.gather(x, 3, index).reshape(n, num_heads, r, topk * t, d)

    q_h = heads_regions(q)
    k_sel, v_sel = gather(heads_regions(k)), gather(heads_regions(v))
    out = torch.softmax((q_h * scale) @ k_sel.transpose(-1, -2), -1) @ v_sel
    out = out.reshape(n, num_heads, n_win, n_win, rh, rw, d).permute(0, 1, 6, 2, 4, 3, 5)
    return out.reshape(n, c, h, w).permute(0, 2, 3, 1), idx



# ------------------------------------------------------ attention panels and benchmark cases


def bra_panels(module, args, locate, captures):
    """The query's region, its top-k routed key regions and the attention weights, recomputed
    by :func:`bra_reference` from the layer's parameters."""
    m, x = module, args[0]
    h, w = x.shape[1:3]
    _, idx, weights = bra_reference(x, m.qkv.weight, m.qkv.bias, m.lepe.weight, m.lepe.bias,
                                    m.proj.weight, m.proj.bias, m.n_win, m.topk, m.num_heads,
                                    m.auto_pad, return_weights=True)
    hp, wp = math.ceil(h / m.n_win) * m.n_win, math.ceil(w / m.n_win) * m.n_win
    rh, rw = hp // m.n_win, wp // m.n_win
    qy, qx = locate((h, w))
    region = (qy // rh) * m.n_win + qx // rw
    regions = torch.zeros(hp, wp)
    for r in idx[0, region].tolist():
        row, col = divmod(r, m.n_win)
        regions[row * rh:(row + 1) * rh, col * rw:(col + 1) * rw] = 1
    regions[(qy // rh) * rh:(qy // rh + 1) * rh, (qx // rw) * rw:(qx // rw + 1) * rw] += 1
    attn = weights[0, :, qy * wp + qx].mean(0).view(hp, wp)
    return [
        AttentionPanel('regions', f'BRA routed regions: query region (2) and its top-{m.topk} '
                       f'of {m.n_win**2} key regions (1)', regions[:h, :w], (rh, rw)),
        AttentionPanel('attention', 'BRA attention weights of the query', attn[:h, :w],
                       (rh, rw)),
    ]


ATTENTION_PANELS = {'BiLevelRoutingAttention': bra_panels}

# (label, N, H, W, C, heads, n_win, topk): BiFormer-S BRA maps at 800x1344 (COCO, S=16) and
# 512x512 (ADE20K, S=8, batch 2), already padded to a multiple of n_win.
BENCH_SIZES = [
    ('det stage 1 1x208x336x64', 1, 208, 336, 64, 2, 16, 1),
    ('det stage 2 1x112x176x128', 1, 112, 176, 128, 4, 16, 4),
    ('det stage 3 1x64x96x256', 1, 64, 96, 256, 8, 16, 16),
    ('seg stage 1 2x128x128x64', 2, 128, 128, 64, 2, 8, 1),
    ('seg stage 3 2x32x32x256', 2, 32, 32, 256, 8, 8, 16),
]
BENCH_QUICK_SIZES = [('quick 1x16x24x32', 1, 16, 24, 32, 2, 4, 3)]


def _bench_build(impl, size, device):
    _, n, h, w, c, heads, n_win, topk = size

    def build():
        gen = torch.Generator().manual_seed(0)
        inputs = [torch.randn(n, h, w, c, generator=gen).to(device).requires_grad_()
                  for _ in range(3)]
        return (lambda q, k, v: impl(q, k, v, n_win, topk, heads)[0]), inputs

    return build


def _kernels_floor_build(size, device):
    """The 'SDPA kernels (floor)' case: the attention kernels of mmattn's CPU path alone, on
    routed K/V gathered in advance into the chunks that path attends to at a time
    (``ROUTED_CHUNK_BYTES``), each chunk's q, k and v a contiguous (b, heads, L, d) leaf. No
    routing, gather, index-add or layout change: what is left of the op when every byte it
    moves is free. Its outputs are one tensor per chunk, not comparable to the op's."""
    _, n, h, w, c, heads, n_win, topk = size
    regions, tokens = n * n_win * n_win, (h // n_win) * (w // n_win)
    step = max(1, ROUTED_CHUNK_BYTES // (topk * tokens * c * 4))

    def build():
        gen = torch.Generator().manual_seed(0)
        leaves = []
        for start in range(0, regions, step):
            b = min(regions, start + step) - start
            leaves += [torch.randn(b, heads, length, c // heads, generator=gen).to(device)
                       .requires_grad_() for length in (tokens, topk * tokens, topk * tokens)]

        def run(*chunks):
            return tuple(F.scaled_dot_product_attention(*chunks[i:i + 3], scale=c**-0.5)
                         for i in range(0, len(chunks), 3))

        return run, leaves

    return build


BENCH_KERNELS = 'SDPA kernels (floor)'


def bench_cases(device='cpu', quick=False):
    """The BRA core against the official repository's two formulations (the legacy expand +
    gather of the released models, the refactored NCHW one) and the floor of its attention
    kernels alone; see :func:`~mmattn.ops.common.check_bench_case`."""
    cases = []
    for size in BENCH_QUICK_SIZES if quick else BENCH_SIZES:
        op = f'BRA S={size[6]} topk={size[7]}'
        for name, impl in (('mmattn', bi_level_routing_attention),
                           ('official legacy gather', bi_level_routing_attention_gather),
                           ('official NCHW gather', bi_level_routing_attention_nchw)):
            cases.append(dict(op=op, impl=name, size=size[0],
                              build=_bench_build(impl, size, device)))
        cases.append(dict(op=op, impl=BENCH_KERNELS, size=size[0],
                          build=_kernels_floor_build(size, device)))
    return cases
