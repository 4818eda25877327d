"""Neighborhood attention 2-D with dilation and relative positional bias (NAT / DiNAT).

Semantics are NATTEN's (SHI-Labs/NATTEN, ``NeighborhoodAttention2D`` of 0.14-0.17 and its CPU
index functions): every query attends to exactly ``K*K`` keys of
its own dilation group; near a border the window is shifted inward (clamped), never zero padded;
the bias index is the true relative offset ``(key - query) / dilation + K - 1``, rows first.

Fast path: the queries of each dilation group are cut into tiles of ``T x T`` consecutive group
positions; a tile sees one key block of at most ``(T+K-1) x (T+K-1)`` positions holding the union
of its queries' windows, and an additive bias (the rpb entry, ``-inf`` outside a query's window)
keeps exactly each query's ``K*K`` neighbours. NA becomes batched small dense matmuls that copy K
and V about ``((T+K-1)/T)**2`` times, not ``K*K`` times like an unfold / im2col implementation.
The matmuls run in cache-sized chunks inside one autograd Function.

Traced (``torch.compile``, ``torch.export``, the ONNX exporter), the fast path's index plan
cannot be built (it is Python per map size, with ``torch.unique``); the op then runs the same
tiles from a static plan computed with tensor arithmetic on the symbolic H, W, so one graph
serves every size and still copies K and V only ``((T+K-1)/T)**2`` times.

Order of this file: the functional op :func:`neighborhood_attention_2d` (tiled fast path and
the static-plan form traced by ``torch.export`` / ``torch.compile``), the module
:class:`NeighborhoodAttention`, the reference :func:`neighborhood_attention_2d_reference` (the
functional op's arguments), then the declaration (:func:`~mmattn.ops.registry.register_op`:
reference and MAC formula). The traced, unfold and dense forms the benchmark compares against,
the benchmark cases and the attention pictures are in :mod:`mmattn.analysis.ops.neighborhood`.
"""
from functools import lru_cache
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mmattn.ops.common import check_heads, check_qkv
from mmattn.ops.registry import register_op
from mmattn.registry import register_model

# Queries per tile side. 6 measured best on CPU for K=7 (tiles 4..8, tools/analysis/benchmark.py
# --ops neighborhood): larger tiles waste logits on the key block, smaller ones copy K and V
# more often.
DEFAULT_TILE = 6
# Logits per chunk of the attention loop (fp32: 512 KiB, stays in cache).
CHUNK_ELEMENTS = 2**17
# Queries per tile side of the traced form, one size for every map (its plan is static). 4
# measured fastest in onnxruntime for NAT's stage-1 NA (tiles 3, 4, 6, 8) and on a par with 6
# under inductor: onnxruntime's batched small matmuls gain little from larger tiles.
TRACED_TILE = 4
# Exported graphs raise logits lower than their row's maximum minus this to that level.
EXPORT_LOGIT_FLOOR = 80.
LAYOUT = ('B', 'H', 'W', 'heads', 'head_dim')


def _check_size(kernel_size: int, dilation: int, height: float, width: float) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) \
            or kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be an odd integer >= 3, got {kernel_size!r}')
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f'dilation must be an integer >= 1, got {dilation!r}')
    need = kernel_size * dilation
    if height < need or width < need:
        raise ValueError(
            f'neighborhood attention needs a feature map of at least kernel_size*dilation = '
            f'{kernel_size}*{dilation} = {need} on both axes, got {height}x{width} (HxW); '
            'pad the input before the op')
def _check_inputs(q: Tensor, k: Tensor, v: Tensor, kernel_size: int, dilation: int,
                  rpb: Optional[Tensor]) -> None:
    check_qkv(q, k, v, LAYOUT)
    if not (q.dtype == k.dtype == v.dtype and q.device == k.device == v.device):
        raise ValueError('q, k, v must share dtype and device')
    _check_size(kernel_size, dilation, q.shape[1], q.shape[2])
    if rpb is not None:
        want = (q.shape[3], 2 * kernel_size - 1, 2 * kernel_size - 1)
        if not isinstance(rpb, Tensor) or tuple(rpb.shape) != want:
            got = tuple(rpb.shape) if isinstance(rpb, Tensor) else type(rpb).__name__
            raise ValueError('rpb must have shape (heads, 2*kernel_size-1, 2*kernel_size-1) '
                             f'= {want}, got {got}')


class _AxisPlan(NamedTuple):
    """Tiling of one axis; depends only on (length, kernel_size, dilation, tile)."""
    tile: int  # query slots per tile
    block: int  # key slots per tile
    q_idx: Tensor  # (tiles, tile) position read by each query slot
    k_idx: Tensor  # (tiles, block) position read by each key slot
    inv: Tensor  # (length,) flat query slot holding each position
    off_cls: Tensor  # (classes, tile, block) bias index of each (query, key) pair; 2K-1 = masked
    cls_inv: Tensor  # (tiles,) class of each tile


@lru_cache(maxsize=512)
def _axis_plan(length: int, kernel_size: int, dilation: int, tile: int) -> _AxisPlan:
    ks, d, r = kernel_size, dilation, kernel_size // 2
    n_max = -(-length // d)  # group 0 is the longest
    if n_max <= tile + ks - 1:
        tile = n_max  # one tile per group: its key block is the whole group anyway
    else:
        tile = -(-n_max // -(-n_max // tile))  # same number of tiles, fewer padding slots
    block = min(tile + ks - 1, n_max)
    q_idx, k_idx, offs, inv = [], [], [], torch.empty(length, dtype=torch.long)
    for g in range(d):
        n = -(-(length - g) // d)  # this group's length: ceil((L - g) / d), not floor(L / d)
        start = (torch.arange(n) - r).clamp(0, n - ks)  # window start, shifted inward at borders
        p = torch.arange(0, n, tile)[:, None] + torch.arange(tile)  # (tiles, tile)
        valid = p < n
        # padding slots repeat the group's last query; their output is never read back
        p = p.clamp(max=n - 1)
        m = start[p[:, 0]].clamp(max=max(n - block, 0))[:, None] + torch.arange(block)
        rel = m[:, None, :] - start[p][:, :, None]  # key's place in each query's window
        offs.append(torch.where((rel >= 0) & (rel < ks), m[:, None, :] - p[:, :, None] + ks - 1,
                                2 * ks - 1))
        slot = sum(t.numel() for t in q_idx) + torch.arange(p.numel()).view_as(p)
        inv[g + d * p[valid]] = slot[valid]
        q_idx.append(g + d * p)
        k_idx.append(g + d * m.clamp(max=n - 1))  # keys past the group end are masked
    off = torch.cat(offs)
    off_cls, cls_inv = torch.unique(off.flatten(1), dim=0, return_inverse=True)
    return _AxisPlan(tile, block, torch.cat(q_idx), torch.cat(k_idx), inv,
                     off_cls.view(-1, tile, block), cls_inv)


class _Plan(NamedTuple):
    """Gather indices of one batch element; batch b adds b * (rows per element)."""
    rows: _AxisPlan
    cols: _AxisPlan
    q_rows: Tensor  # (tiles*heads*n_q,) row of the (H*W*heads, D) input for each query slot
    k_rows: Tensor  # (tiles*heads*n_k,) same for each key slot
    out_rows: Tensor  # (H*W*heads,) row of the tiled (tiles*heads*n_q, D) output per output row
    bias_rows: Tensor  # (tiles*heads,) row of the per-class bias table of each matrix
    off_r: Tensor  # rows.off_cls on the device
    off_c: Tensor  # cols.off_cls on the device


# Few entries: a plan takes megabytes at detection resolutions, and multi-scale training sees
# a new map size every iteration; the blocks of one level share one entry.
@lru_cache(maxsize=16)
def _plan(height: int, width: int, kernel_size: int, dilation: int, tile: int, heads: int,
          bias_heads: int, device: torch.device) -> _Plan:
    rows = _axis_plan(height, kernel_size, dilation, tile)
    cols = _axis_plan(width, kernel_size, dilation, tile)
    n_tr, n_tc = rows.q_idx.shape[0], cols.q_idx.shape[0]
    n_q = rows.tile * cols.tile
    h = torch.arange(heads).view(1, -1, 1)

    def src(r: Tensor, c: Tensor) -> Tensor:  # -> (tiles, heads, slots) rows of the input
        pix = (r[:, None, :, None] * width + c[None, :, None, :]).view(n_tr * n_tc, 1, -1)
        return (pix * heads + h).flatten()

    r, c = rows.inv[:, None], cols.inv[None, :]
    tile_of = (r // rows.tile * n_tc + c // cols.tile).view(-1, 1, 1)
    slot = (r % rows.tile * cols.tile + c % cols.tile).view(-1, 1, 1)
    out_rows = ((tile_of * heads + h) * n_q + slot).flatten()
    tile_cls = rows.cls_inv[:, None] * cols.off_cls.shape[0] + cols.cls_inv
    bias_rows = tile_cls.view(-1, 1) * bias_heads + h.view(1, -1) % bias_heads
    return _Plan(rows, cols, *(t.to(device) for t in (
        src(rows.q_idx, cols.q_idx), src(rows.k_idx, cols.k_idx), out_rows, bias_rows.flatten(),
        rows.off_cls, cols.off_cls)))


def _batched(idx: Tensor, batch: int, stride: int) -> Tensor:
    if batch == 1:
        return idx
    return (torch.arange(batch, device=idx.device)[:, None] * stride + idx).flatten()


class _TileAttention(torch.autograd.Function):
    """``softmax(q k^T + bias[bias_rows]) v`` over many small matrices, in cache-sized chunks.

    Chunks keep the logits in cache between the GEMM, the softmax and the second GEMM (about 2x
    faster on CPU than whole-tensor ops) and pick each matrix's bias from the small per-class
    table, so no logits-sized bias is ever built. Saves the probabilities for backward (recomputing
    them from the log-sum-exp measured slower).
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, bias_rows: Tensor) -> Tensor:
        # q (N, n_q, D), already scaled; k, v (N, n_k, D); bias (R, n_q, n_k); bias_rows (N,)
        n, n_q, n_k = q.shape[0], q.shape[1], k.shape[1]
        chunk = max(1, CHUNK_ELEMENTS // (n_q * n_k))
        out = q.new_empty(q.shape)
        attn = q.new_empty(n, n_q, n_k) if any(ctx.needs_input_grad) else None
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            logits = torch.baddbmm(bias.index_select(0, bias_rows[s:e]), q[s:e],
                                   k[s:e].transpose(1, 2))
            p = torch.softmax(logits, -1) if attn is None else \
                torch.softmax(logits, -1, out=attn[s:e])
            torch.bmm(p, v[s:e], out=out[s:e])
        if attn is not None:
            ctx.save_for_backward(q, k, v, attn, out, bias_rows)
            ctx.bias_shape = bias.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout: Tensor) -> tuple:
        q, k, v, attn, out, bias_rows = ctx.saved_tensors
        dout = dout.contiguous()
        n, n_q, n_k = attn.shape
        chunk = max(1, CHUNK_ELEMENTS // (n_q * n_k))
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dbias = q.new_zeros(ctx.bias_shape) if ctx.needs_input_grad[3] else None
        # sum_j p_ij * dp_ij == dout_i . out_i: the softmax backward without a pass over logits
        delta = (dout * out).sum(-1, keepdim=True)
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            p, do = attn[s:e], dout[s:e]
            torch.bmm(p.transpose(1, 2), do, out=dv[s:e])
            ds = torch.bmm(do, v[s:e].transpose(1, 2)).sub_(delta[s:e]).mul_(p)
            torch.bmm(ds, k[s:e], out=dq[s:e])
            torch.bmm(ds.transpose(1, 2), q[s:e], out=dk[s:e])
            if dbias is not None:
                dbias.index_add_(0, bias_rows[s:e], ds)
        return dq, dk, dv, dbias, None


def _windows_1d(length, kernel_size: int, dilation: int, device: torch.device) -> tuple:
    """(keys, bias_idx), each (length, K): the K neighbours of every position on one axis and
    their rpb index, as tensor arithmetic on ``length`` (which may be symbolic)."""
    i = torch.arange(length, device=device)
    group, pos = i % dilation, i // dilation
    group_len = (length - group + dilation - 1) // dilation  # ceil((L - g) / d)
    start = torch.minimum((pos - kernel_size // 2).clamp(min=0), group_len - kernel_size)
    steps = start[:, None] + torch.arange(kernel_size, device=device)
    return group[:, None] + dilation * steps, steps - pos[:, None] + kernel_size - 1


class _StaticAxis(NamedTuple):
    """Static tiling of one axis (see :func:`_static_axis`)."""
    q_idx: Tensor  # (tiles, tile) position read by each query slot
    k_idx: Tensor  # (tiles, block) position read by each key slot
    off_cls: Tensor  # (classes, tile, block) bias index of each (query, key) pair; 2K-1 = masked
    tile_cls: Tensor  # (tiles,) class of each tile
    slot: Tensor  # (length,) flat query slot holding each position


def _tile_offsets(t: Tensor, n: Tensor, kernel_size: int, tile: int) -> Tensor:
    """(..., tile, block) bias index of every (query slot, key slot) pair of tile(s) ``t`` of a
    dilation group of length ``n`` (broadcast together); ``2K-1`` where the key is outside the
    query's window. The same rule as :func:`_axis_plan`, as tensor arithmetic."""
    ks, r, block = kernel_size, kernel_size // 2, tile + kernel_size - 1
    t, n = t[..., None], n[..., None]
    p = torch.minimum(t * tile + torch.arange(tile, device=t.device), n - 1)  # padding: last
    start = torch.minimum((p - r).clamp(min=0), n - ks)  # window start, shifted inward
    m = torch.minimum(t * tile - r, n - block).clamp(min=0) + torch.arange(block, device=t.device)
    rel = m[..., None, :] - start[..., None]  # key's place in each query's window
    return torch.where((rel >= 0) & (rel < ks), m[..., None, :] - p[..., None] + ks - 1, 2 * ks - 1)


def _static_axis(length, kernel_size: int, dilation: int, tile: int,
                 device: torch.device) -> _StaticAxis:
    """The tiling of :func:`_axis_plan` with a fixed tile size, as tensor arithmetic on
    ``length`` (which may be symbolic): what a graph traced for any H, W can hold.

    Every dilation group gets ``ceil(ceil(length / d) / tile)`` tiles (a shorter group repeats
    its last query in the spare slots) and every tile a key block of ``tile + K - 1`` positions
    starting at ``clamp(t * tile - K//2, 0, n - block)`` (positions past the group end are
    clamped and masked), which holds the windows of all its queries. Tiles with equal bias
    offsets share a class, found without data-dependent ops: per group length (dilation
    groups differ by at most one position), the first ``ceil((K//2) / tile)`` tiles, the
    interior tiles (window and block unclamped: one class), and the last
    ``ceil((K//2) / tile) + 1`` tiles.
    """
    ks, d, r, block = kernel_size, dilation, kernel_size // 2, tile + kernel_size - 1
    n_max = (length + d - 1) // d
    tiles = (n_max + tile - 1) // tile
    g = torch.arange(d, device=device)[:, None]
    n = (length - g + d - 1) // d  # (d, 1) group lengths, ceil((L - g) / d)
    p = torch.minimum(torch.arange(tiles * tile, device=device), n - 1)  # (d, slots)
    t = torch.arange(tiles, device=device)
    m = torch.minimum(t * tile - r, n - block).clamp(min=0)[..., None] + \
        torch.arange(block, device=device)  # (d, tiles, block)
    i = torch.arange(length, device=device)
    head = -(-r // tile)  # tiles before the first interior one
    classes = 2 * head + 2  # head tiles, interior, head + 1 tail tiles
    last = (n - r) // tile - 1  # (d, 1) last interior tile (operands >= 0: ONNX Div truncates)
    local = torch.where(t < head, t, torch.where(t <= last, head, head + t - last))
    n_rep = n_max - torch.arange(1 if d == 1 else 2, device=device)[:, None]  # group lengths
    c = torch.arange(classes, device=device)
    rep = torch.where(c < head, c, torch.where(c == head, head, (n_rep - r) // tile - 1 + c - head))
    return _StaticAxis(
        q_idx=(g + d * p).view(-1, tile),
        k_idx=(g[..., None] + d * torch.minimum(m, n[..., None] - 1)).view(-1, block),
        off_cls=_tile_offsets(rep.clamp(0, tiles - 1), n_rep, ks, tile).view(-1, tile, block),
        tile_cls=((n_max - n) * classes + local).view(-1),
        slot=i % d * (tiles * tile) + i // d)


def _neighborhood_attention_2d_traced(q: Tensor, k: Tensor, v: Tensor, kernel_size: int,
                                      dilation: int, table: Tensor, scale: float,
                                      dropout_p: float, tile: int = TRACED_TILE,
                                      floor: Optional[bool] = None) -> Tensor:
    """The tiled attention with a static tile plan and no size-dependent Python: what
    ``torch.export`` / ``torch.compile`` / the ONNX exporter trace, one graph for any H, W.

    Same tiles as the fast path (K and V copied ``((tile+K-1)/tile)**2`` times, never K*K
    times) with a fixed tile size, as three batched matmuls: the bias of each tile class,
    ``(classes_r, classes_c, heads, T*T, B*B)``, by a one-hot matmul of the rpb table (a
    realised, contiguous tensor, so inductor reads it with vector loads instead of gathering
    the table per logit); ``q k^T`` plus the bias of each tile's class; the probabilities times
    V. Masked keys get ``finfo.min`` (finite: a one-hot product with ``-inf`` would be NaN),
    which the softmax turns into exact zeros.

    ``floor`` (default: while exporting) raises every logit more than
    :data:`EXPORT_LOGIT_FLOOR` below its row's maximum to that level before the softmax:
    onnxruntime's exponential takes a slow path for arguments below about -87 (onnxruntime
    1.32's CPU Softmax on rows two thirds masked ran 8x slower than on finite logits), and
    weights below ``e**-80`` of the largest change by less than that, far under float
    rounding.
    """
    b, height, width, heads, head_dim = q.shape
    ks, dev = kernel_size, q.device
    if floor is None:
        floor = torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()
    rows = _static_axis(height, ks, dilation, tile, dev)
    cols = _static_axis(width, ks, dilation, tile, dev)
    n_tr, n_tc, block = rows.q_idx.shape[0], cols.q_idx.shape[0], rows.k_idx.shape[1]
    n_q, n_k = tile * tile, block * block
    head = torch.arange(heads, device=dev)
    flat = torch.onnx.is_in_onnx_export()

    def gather(x: Tensor, r: Tensor, c: Tensor) -> Tensor:  # -> (b*tiles*heads, slots, D)
        n = r.shape[1]
        if flat:  # one Gather in the tile layout; onnxruntime's inputs are contiguous
            idx = (r[:, None, None, :, None] * width + c[None, :, None, None, :]) * heads + \
                head[:, None, None]
            return x.reshape(b, -1, head_dim).index_select(1, idx.flatten()).view(
                -1, n * n, head_dim)
        # pixels, then heads to the front: a view of any qkv split (inductor cannot index a
        # flattened non-contiguous input through a gathered index: "vr must not be None")
        idx = r[:, None, :, None] * width + c[None, :, None, :]
        x = x.flatten(1, 2).index_select(1, idx.flatten())
        return x.view(b, n_tr, n_tc, n * n, heads, head_dim).transpose(3, 4).reshape(
            -1, n * n, head_dim)

    q_t = gather(q, rows.q_idx, cols.q_idx) * scale  # next to the matmul: onnxruntime fuses it
    k_t, v_t = gather(k, rows.k_idx, cols.k_idx), gather(v, rows.k_idx, cols.k_idx)
    table = F.pad(table, (0, 1, 0, 1), value=torch.finfo(q.dtype).min)
    offsets = torch.arange(2 * ks, device=dev)
    one_hot_r = (rows.off_cls[..., None] == offsets).to(q.dtype)  # (classes, T, B, 2K)
    one_hot_c = (cols.off_cls[..., None] == offsets).to(q.dtype)
    bias_r = torch.matmul(one_hot_r[:, None], table[:, None])  # (classes, heads, T, B, 2K)
    bias = torch.matmul(bias_r[:, None, :, :, None],
                        one_hot_c.transpose(-1, -2)[None, :, None, None])
    bias = bias.reshape(one_hot_r.shape[0], one_hot_c.shape[0], -1, n_q, n_k)
    logits = torch.bmm(q_t, k_t.transpose(1, 2)).view(b, n_tr, n_tc, heads, n_q, n_k) + \
        bias[rows.tile_cls][:, cols.tile_cls]
    if floor:
        logits = torch.maximum(logits, logits.amax(-1, keepdim=True) - EXPORT_LOGIT_FLOOR)
    attn = torch.softmax(logits, -1).view(-1, n_q, n_k)
    if dropout_p > 0:
        attn = F.dropout(attn, dropout_p)
    out = torch.bmm(attn, v_t)  # (b * tiles_r * tiles_c * heads, T*T, D)
    slot_r, slot_c = rows.slot, cols.slot
    idx = (slot_r // tile * (n_tc * heads * n_q) + slot_r % tile * tile)[:, None, None] + \
        (slot_c // tile * (heads * n_q) + slot_c % tile)[None, :, None] + head * n_q
    return out.view(b, -1, head_dim).index_select(1, idx.flatten()).view(
        b, height, width, heads, head_dim)


def neighborhood_attention_2d(q: Tensor,
                              k: Tensor,
                              v: Tensor,
                              kernel_size: int,
                              dilation: int = 1,
                              rpb: Optional[Tensor] = None,
                              scale: Optional[float] = None,
                              dropout_p: float = 0.,
                              tile: int = DEFAULT_TILE) -> Tensor:
    """2-D (dilated) neighborhood attention with NATTEN's semantics.

    Args:
        q (Tensor): queries (B, H, W, heads, head_dim). Heads-last: what splitting a
            channels-last qkv projection gives without a permute, and the layout the fast path
            gathers fastest (whole rows of head_dim). Any strides.
        k (Tensor): keys, same shape as ``q``.
        v (Tensor): values, same shape as ``q``.
        kernel_size (int): odd window size K >= 3 on each axis.
        dilation (int): dilation d >= 1: a query only sees positions with its own residue modulo
            d on each axis. Needs H >= K*d and W >= K*d (pad before the op).
        rpb (Tensor, optional): relative positional bias (heads, 2K-1, 2K-1), axis 1 the row
            offset, indexed by ``(key - query) / d + K - 1``. Defaults to None (no bias).
        scale (float, optional): factor of q.k, applied before the bias is added. Defaults to
            head_dim ** -0.5.
        dropout_p (float): dropout on the attention probabilities; pass 0 at eval. When > 0
            the op runs on plain autograd ops (slower, materialises the tiled bias).
        tile (int): queries per tile side of the eager fast path; changes speed, not the
            result. Traced, the op uses :data:`TRACED_TILE`.

    Returns:
        Tensor: (B, H, W, heads, head_dim), contiguous.
    """
    _check_inputs(q, k, v, kernel_size, dilation, rpb)
    b, height, width, heads, head_dim = q.shape
    scale = head_dim**-0.5 if scale is None else scale
    table = q.new_zeros(1, 2 * kernel_size - 1, 2 * kernel_size - 1) if rpb is None \
        else rpb.to(q.dtype)
    if torch.compiler.is_compiling():  # torch.export / torch.compile: any H, W in one graph
        return _neighborhood_attention_2d_traced(q, k, v, kernel_size, dilation, table, scale,
                                                 dropout_p)
    plan = _plan(height, width, kernel_size, dilation, tile, heads, table.shape[0], q.device)
    rows, cols = plan.rows, plan.cols
    n_q, n_k = rows.tile * cols.tile, rows.block * cols.block

    # Bias of every (query, key) pair of a tile, one table per tile class (border tiles,
    # dilation groups: a handful), so the rpb gradient sums over tiles, not over pixels.
    # Slot 2K-1 of the padded table is -inf: keys outside the query's window.
    table = F.pad(table, (0, 1, 0, 1), value=float('-inf'))
    bias = table[:, plan.off_r[:, None, :, None, :, None], plan.off_c[None, :, None, :, None, :]]
    bias = bias.reshape(table.shape[0], -1, n_q, n_k).transpose(0, 1).reshape(-1, n_q, n_k)

    # index_select along dim 0 of a (B*H*W*heads, head_dim) view: several times faster on CPU
    # than gathering along an inner dimension, and lands directly in the matmul layout.
    def gather(x: Tensor, idx: Tensor, slots: int) -> Tensor:
        return x.reshape(-1, head_dim).index_select(0, idx).view(-1, slots, head_dim)

    pixels = height * width * heads
    k_rows = _batched(plan.k_rows, b, pixels)
    q_t = gather(q * scale, _batched(plan.q_rows, b, pixels), n_q)
    k_t, v_t = gather(k, k_rows, n_k), gather(v, k_rows, n_k)
    bias_rows = plan.bias_rows.repeat(b)
    if dropout_p > 0:
        logits = torch.baddbmm(bias.index_select(0, bias_rows), q_t, k_t.transpose(1, 2))
        out = torch.bmm(F.dropout(torch.softmax(logits, -1), dropout_p), v_t)
    else:
        out = _TileAttention.apply(q_t, k_t, v_t, bias, bias_rows)
    out_rows = _batched(plan.out_rows, b, plan.q_rows.numel())  # tiled rows per batch element
    out = out.view(-1, head_dim).index_select(0, out_rows)
    return out.view(b, height, width, heads, head_dim)


@register_model
class NeighborhoodAttention(nn.Module):
    """Multi-head 2-D (dilated) neighborhood attention: NATTEN's NeighborhoodAttention2D.

    Channels-last like NAT blocks: (B, H, W, C) -> (B, H, W, C) (the NCHW plug-in block for
    any host is :class:`mmattn.plug.NeighborhoodAttention2d`). The qkv output channels are
    [q | k | v], heads contiguous inside each, as in official checkpoints. The input must be at
    least ``kernel_size * dilation`` on both axes: NATTEN <= 0.15's zero padding of small maps
    belongs to the backbone.

    Args:
        embed_dims (int): channels C.
        num_heads (int): number of heads; must divide C.
        kernel_size (int): odd window size K.
        dilation (int): dilation d. Defaults to 1.
        qkv_bias (bool): bias of the qkv projection. Defaults to True.
        qk_scale (float, optional): overrides head_dim ** -0.5. Defaults to None.
        attn_drop (float): dropout on the attention probabilities, training only; when > 0 the
            op leaves its fused path (see :func:`neighborhood_attention_2d`). Defaults to 0.
        proj_drop (float): dropout after the output projection. Defaults to 0.
        rel_pos_bias (bool): learn the relative positional bias ``rpb``. Defaults to True.
    """

    def __init__(self, embed_dims: int, num_heads: int, kernel_size: int, dilation: int = 1,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, attn_drop: float = 0.,
                 proj_drop: float = 0., rel_pos_bias: bool = True):
        super().__init__()
        check_heads(embed_dims, num_heads)
        _check_size(kernel_size, dilation, float('inf'), float('inf'))
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.scale = qk_scale
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        if rel_pos_bias:
            self.rpb = nn.Parameter(
                torch.empty(num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1))
            nn.init.trunc_normal_(self.rpb, std=.02, a=-2., b=2.)
        else:
            self.register_parameter('rpb', None)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).view(b, h, w, 3, self.num_heads, c // self.num_heads).unbind(3)
        x = neighborhood_attention_2d(
            q, k, v, self.kernel_size, self.dilation, self.rpb, self.scale,
            dropout_p=self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(x.view(b, h, w, c)))

    def forward_any_size(self, x: Tensor) -> Tensor:
        """:meth:`forward` on a map of any size (NATTEN 0.14/0.15 module behaviour).

        A map smaller than ``kernel_size * dilation`` on either axis is zero padded at the
        bottom/right before qkv and the output is cropped back; the padded tokens are not
        masked, so their keys and values are the qkv bias.
        """
        height, width = x.shape[1:3]
        need = self.kernel_size * self.dilation
        pad_h, pad_w = max(need - height, 0), max(need - width, 0)
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        x = self(x)  # through __call__: hooks (vis_attention, FLOP counting) see the layer
        if pad_h or pad_w:
            # the output projection is per token: cropping after it equals cropping before it
            x = x[:, :height, :width].contiguous()
        return x

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'kernel_size={self.kernel_size}, dilation={self.dilation}, '
                f'rel_pos_bias={self.rpb is not None}')


# ------------------------------------------------------------------------------ reference


def _window_1d(i: int, length: int, kernel_size: int, dilation: int) -> list:
    """Neighbours of position ``i`` on one axis, straight from the definition (no formula)."""
    group = [p for p in range(length) if p % dilation == i % dilation]
    me = group.index(i)
    # Of all runs of K consecutive group members, the one whose centre is nearest to i: centred
    # inside the map, pushed inward at the borders.
    best = min(range(len(group) - kernel_size + 1), key=lambda s: abs(s + kernel_size // 2 - me))
    return group[best:best + kernel_size]


def neighborhood_attention_2d_reference(q, k, v, kernel_size, dilation=1, rpb=None,
                                        scale=None, return_weights=False):
    """Slow, obviously right :func:`neighborhood_attention_2d`, for tests (same arguments).

    With ``return_weights`` it returns ``(out, weights)``, the weights a dense
    (B, heads, H*W, H*W) matrix over row-major pixels, zero outside each query's window.

    Dense (H*W) x (H*W) attention whose bias matrix is filled pixel by pixel from explicit
    neighbour lists: ``rpb[(ki - i) / d + K - 1, (kj - j) / d + K - 1]`` for each of the K*K
    neighbours (ki, kj) of (i, j), ``-inf`` everywhere else.
    """
    _check_inputs(q, k, v, kernel_size, dilation, rpb)
    b, height, width, heads, head_dim = q.shape
    scale = head_dim**-0.5 if scale is None else scale
    ks = kernel_size
    table = q.new_zeros(heads, 2 * ks - 1, 2 * ks - 1) if rpb is None else rpb.to(q.dtype)
    row_nbrs = [_window_1d(i, height, ks, dilation) for i in range(height)]
    col_nbrs = [_window_1d(j, width, ks, dilation) for j in range(width)]
    query, key, off_r, off_c = [], [], [], []
    for i in range(height):
        for j in range(width):
            for ki in row_nbrs[i]:
                for kj in col_nbrs[j]:
                    query.append(i * width + j)
                    key.append(ki * width + kj)
                    off_r.append((ki - i) // dilation + ks - 1)
                    off_c.append((kj - j) // dilation + ks - 1)
    n = height * width
    bias = q.new_full((heads, n, n), float('-inf')).index_put(
        (torch.arange(heads)[:, None], torch.tensor(query), torch.tensor(key)),
        table[:, torch.tensor(off_r), torch.tensor(off_c)])
    qf, kf, vf = (t.reshape(b, n, heads, head_dim).transpose(1, 2) for t in (q, k, v))
    attn = torch.softmax(qf @ kf.transpose(-2, -1) * scale + bias, dim=-1)
    out = (attn @ vf).transpose(1, 2).reshape(b, height, width, heads, head_dim)
    return (out, attn) if return_weights else out


# ------------------------------------------------------------------ the declaration


def neighborhood_attention_2d_macs(out, q, k, v, kernel_size, *args, **kwargs):
    """MACs of the definition: QK^T and AV each cost H*W*K^2*C per image, whatever the
    dilation (each query meets K^2 keys); the tiles' masked keys do not count."""
    b, h, w, heads, dim = q.shape
    return 2 * b * h * w * heads * kernel_size**2 * dim


register_op('neighborhood',
            references={neighborhood_attention_2d: neighborhood_attention_2d_reference},
            macs={neighborhood_attention_2d: neighborhood_attention_2d_macs},
            tools='mmattn.analysis.ops.neighborhood')
