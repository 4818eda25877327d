"""Neighborhood attention 2-D with dilation and relative positional bias (NAT / DiNAT).

Semantics are NATTEN's (specs/nat.md section 2): every query attends to exactly ``K*K`` keys of
its own dilation group; near a border the window is shifted inward (clamped), never zero padded;
the bias index is the true relative offset ``(key - query) / dilation + K - 1``, rows first.

The fast path computes attention on tiles: the queries of each group are cut into tiles of
``T x T`` consecutive group positions; a tile sees one ``(T+K-1) x (T+K-1)`` key block, which holds
the union of its queries' windows, and an additive bias (rpb, ``-inf`` outside each query's window)
selects each query's ``K*K`` neighbours. That turns NA into batched dense matmuls and copies K and V
about ``((T+K-1)/T)**2`` times instead of the ``K*K`` times of an unfold / im2col implementation.
"""
import math
from functools import lru_cache
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmattn.registry import register_model

# Queries per tile side. Measured on CPU (tools/analysis/bench_ops.py): 6-8 is the sweet spot
# between the wasted logits of a large key block and the K/V copies of small tiles.
DEFAULT_TILE = 8


class _AxisPlan(NamedTuple):
    """Index bookkeeping of one axis; depends only on (length, kernel, dilation, tile)."""
    tile: int  # queries per tile
    block: int  # keys per tile
    num_tiles: int
    q_idx: Tensor  # (num_tiles * tile,) source position of each query slot
    k_idx: Tensor  # (num_tiles * block,) source position of each key slot
    inv: Tensor  # (length,) query slot holding each position
    off_cls: Tensor  # (num_classes, tile, block) bias index, 2K-1 = masked
    cls_inv: Tensor  # (num_tiles,) class of each tile


def _check_size(kernel_size: int, dilation: int, height: int, width: int) -> None:
    """Raise the ``ValueError`` of a kernel/dilation/map-size mismatch."""
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
    for name, t in (('q', q), ('k', k), ('v', v)):
        if not isinstance(t, Tensor) or t.dim() != 5:
            raise ValueError(f'{name} must be a 5-D tensor (B, heads, H, W, head_dim), got '
                             f'{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}')
    if not q.shape == k.shape == v.shape:
        raise ValueError(f'q, k, v must have the same shape, got {tuple(q.shape)}, '
                         f'{tuple(k.shape)}, {tuple(v.shape)}')
    if not (q.dtype == k.dtype == v.dtype and q.device == k.device == v.device):
        raise ValueError('q, k, v must share dtype and device')
    _check_size(kernel_size, dilation, q.shape[2], q.shape[3])
    if rpb is not None:
        want = (q.shape[1], 2 * kernel_size - 1, 2 * kernel_size - 1)
        if not isinstance(rpb, Tensor) or tuple(rpb.shape) != want:
            got = tuple(rpb.shape) if isinstance(rpb, Tensor) else type(rpb).__name__
            raise ValueError(f'rpb must have shape (heads, 2*kernel_size-1, 2*kernel_size-1) '
                             f'= {want}, got {got}')


@lru_cache(maxsize=512)
def _axis_plan(length: int, kernel_size: int, dilation: int, tile: int,
               device: torch.device) -> _AxisPlan:
    ks, d, r = kernel_size, dilation, kernel_size // 2
    masked = 2 * ks - 1
    n_max = -(-length // d)  # group 0 is the longest: ceil(L / d)
    tile = min(tile, n_max)
    tile = -(-n_max // -(-n_max // tile))  # same tile count, less padding
    block = min(tile + ks - 1, n_max)
    q_idx, k_idx, offs = [], [], []
    inv = torch.empty(length, dtype=torch.long)
    slot = 0
    for g in range(d):
        n = -(-(length - g) // d)  # group length ceil((L-g)/d), not floor(L/d)
        start = (torch.arange(n) - r).clamp(0, n - ks)  # window start, shifted inward at borders
        p = torch.arange(0, n, tile)[:, None] + torch.arange(tile)  # (tiles, tile) group positions
        valid = p < n
        p = p.clamp(max=n - 1)  # padding query slots repeat the last query; their output is dropped
        kstart = start[p[:, 0]].clamp(max=max(n - block, 0))
        m = kstart[:, None] + torch.arange(block)  # (tiles, block) key group positions
        rel = m[:, None, :] - start[p][:, :, None]  # key position inside each query's window
        off = torch.where((rel >= 0) & (rel < ks), m[:, None, :] - p[:, :, None] + ks - 1,
                          torch.full_like(rel, masked))
        q_idx.append(g + d * p.flatten())
        k_idx.append(g + d * m.clamp(max=n - 1).flatten())
        offs.append(off)
        pos = torch.arange(p.numel()).view_as(p)
        inv[g + d * p[valid]] = slot + pos[valid]
        slot += p.numel()
    off = torch.cat(offs)
    off_cls, cls_inv = torch.unique(off.flatten(1), dim=0, return_inverse=True)
    return _AxisPlan(tile, block, off.shape[0], *(t.to(device) for t in (
        torch.cat(q_idx), torch.cat(k_idx), inv, off_cls.view(-1, tile, block), cls_inv)))


def _tiles(x: Tensor, rows_idx: Tensor, cols_idx: Tensor, n_r: int, n_c: int) -> Tensor:
    """(B, h, H, W, D) -> (B, h, n_r*n_c, rows*cols, D) by gathering rows then columns."""
    b, h, _, _, d = x.shape
    x = x.index_select(2, rows_idx).index_select(3, cols_idx)
    x = x.view(b, h, n_r, -1, n_c, x.shape[3] // n_c, d).transpose(3, 4)
    return x.reshape(b, h, n_r * n_c, -1, d)


def neighborhood_attention_2d(q: Tensor,
                              k: Tensor,
                              v: Tensor,
                              kernel_size: int,
                              dilation: int = 1,
                              rpb: Optional[Tensor] = None,
                              scale: Optional[float] = None,
                              dropout_p: float = 0.0,
                              tile: int = DEFAULT_TILE) -> Tensor:
    """2-D (dilated) neighborhood attention with NATTEN's semantics.

    Args:
        q (Tensor): queries, (B, heads, H, W, head_dim) -- heads before the spatial axes, which
            is what splitting a channels-last qkv projection and one permute gives.
        k (Tensor): keys, same shape as ``q``.
        v (Tensor): values, same shape as ``q``.
        kernel_size (int): odd window size K >= 3 per axis.
        dilation (int): dilation d >= 1; a query only sees positions of its own residue class
            modulo d on each axis. Needs H >= K*d and W >= K*d.
        rpb (Tensor, optional): relative positional bias (heads, 2K-1, 2K-1), axis 1 the row
            offset, indexed by ``(key - query) / d + K - 1``. Defaults to None (no bias).
        scale (float, optional): multiplies q.k before the bias is added. Defaults to
            head_dim ** -0.5.
        dropout_p (float): dropout on the attention probabilities (the caller passes 0 at eval).
        tile (int): queries per tile side; a speed knob that does not change the result.

    Returns:
        Tensor: (B, heads, H, W, head_dim).
    """
    _check_inputs(q, k, v, kernel_size, dilation, rpb)
    b, heads, height, width, head_dim = q.shape
    scale = head_dim**-0.5 if scale is None else scale
    rows = _axis_plan(height, kernel_size, dilation, tile, q.device)
    cols = _axis_plan(width, kernel_size, dilation, tile, q.device)

    # Bias of every (query, key) pair of every tile: the rpb entry of their offset, -inf when the
    # key is outside the query's window. Built per tile class (a handful: borders, groups) and
    # then expanded, so the rpb gradient is a reduction over tiles, not a scatter over pixels.
    table = q.new_zeros(1, 2 * kernel_size - 1, 2 * kernel_size - 1) if rpb is None \
        else rpb.to(q.dtype)
    table = F.pad(table, (0, 1, 0, 1), value=float('-inf'))
    bias = table[:, rows.off_cls[:, None, :, None, :, None],
                 cols.off_cls[None, :, None, :, None, :]]
    bias = bias.index_select(1, rows.cls_inv).index_select(2, cols.cls_inv)
    bias = bias.reshape(bias.shape[0], rows.num_tiles * cols.num_tiles,
                        rows.tile * cols.tile, rows.block * cols.block)

    q_t = _tiles(q * scale, rows.q_idx, cols.q_idx, rows.num_tiles, cols.num_tiles)
    k_t = _tiles(k, rows.k_idx, cols.k_idx, rows.num_tiles, cols.num_tiles)
    v_t = _tiles(v, rows.k_idx, cols.k_idx, rows.num_tiles, cols.num_tiles)
    attn = torch.softmax(q_t @ k_t.transpose(-2, -1) + bias, dim=-1)
    if dropout_p > 0:
        attn = F.dropout(attn, dropout_p)
    out = (attn @ v_t).view(b, heads, rows.num_tiles, cols.num_tiles, rows.tile, cols.tile,
                            head_dim)
    out = out.transpose(3, 4).reshape(b, heads, rows.num_tiles * rows.tile,
                                      cols.num_tiles * cols.tile, head_dim)
    return out.index_select(2, rows.inv).index_select(3, cols.inv)


def _window_1d(i: int, length: int, kernel_size: int, dilation: int) -> list:
    """Neighbours of position ``i`` on one axis, from the definition (no closed form)."""
    group = [p for p in range(length) if p % dilation == i % dilation]
    me = group.index(i)
    # Of all K-long runs of consecutive group members, the one whose centre is nearest to i:
    # centred inside, pushed inward at the borders.
    best = min(range(len(group) - kernel_size + 1),
               key=lambda s: abs(s + kernel_size // 2 - me))
    return group[best:best + kernel_size]


def neighborhood_attention_2d_reference(q: Tensor,
                                        k: Tensor,
                                        v: Tensor,
                                        kernel_size: int,
                                        dilation: int = 1,
                                        rpb: Optional[Tensor] = None,
                                        scale: Optional[float] = None) -> Tensor:
    """Slow, obviously right version of :func:`neighborhood_attention_2d` (tests only).

    Dense (H*W) x (H*W) attention whose bias matrix is filled query by query from explicit
    neighbour lists: ``rpb[(ki - i)/d + K-1, (kj - j)/d + K-1]`` for the K*K neighbours, ``-inf``
    elsewhere. Same arguments and layout as :func:`neighborhood_attention_2d`.
    """
    _check_inputs(q, k, v, kernel_size, dilation, rpb)
    b, heads, height, width, head_dim = q.shape
    scale = head_dim**-0.5 if scale is None else scale
    ks = kernel_size
    zero = q.new_zeros(heads, 2 * ks - 1, 2 * ks - 1)
    table = zero if rpb is None else rpb.to(q.dtype)
    rows_i, cols_i, rows_k, cols_k, off_r, off_c = [], [], [], [], [], []
    for i in range(height):
        for j in range(width):
            for ki in _window_1d(i, height, ks, dilation):
                for kj in _window_1d(j, width, ks, dilation):
                    rows_i.append(i * width + j)
                    cols_k.append(ki * width + kj)
                    off_r.append((ki - i) // dilation + ks - 1)
                    off_c.append((kj - j) // dilation + ks - 1)
    n = height * width
    bias = q.new_full((heads, n, n), float('-inf'))
    bias = bias.index_put((torch.arange(heads)[:, None], torch.tensor(rows_i)[None],
                           torch.tensor(cols_k)[None]),
                          table[:, torch.tensor(off_r), torch.tensor(off_c)])
    del rows_k, cols_i
    qf, kf, vf = (t.reshape(b, heads, n, head_dim) for t in (q, k, v))
    attn = torch.softmax(qf @ kf.transpose(-2, -1) * scale + bias, dim=-1)
    return (attn @ vf).view(b, heads, height, width, head_dim)


@register_model
class NeighborhoodAttention2d(nn.Module):
    """Multi-head 2-D (dilated) neighborhood attention, NATTEN's NeighborhoodAttention2D.

    Input and output are channels-last (B, H, W, C), as in NAT blocks. The qkv channels are
    [q | k | v], heads contiguous inside each block, so official checkpoints load unchanged.

    Args:
        embed_dims (int): channels C.
        num_heads (int): heads; C must be divisible by it.
        kernel_size (int): odd window size K.
        dilation (int): dilation d. Defaults to 1.
        qkv_bias (bool): bias of the qkv projection. Defaults to True.
        qk_scale (float, optional): overrides head_dim ** -0.5. Defaults to None.
        attn_drop (float): dropout on the attention probabilities (applied in training on the
            tiled probabilities; masked entries are 0 and stay 0). Defaults to 0.
        proj_drop (float): dropout after the output projection. Defaults to 0.
        rel_pos_bias (bool): learn a relative positional bias table ``rpb``. Defaults to True.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 kernel_size: int,
                 dilation: int = 1,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 rel_pos_bias: bool = True):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                             f'({num_heads})')
        _check_size(kernel_size, dilation, math.inf, math.inf)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.scale = qk_scale
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        if rel_pos_bias:
            self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel_size - 1,
                                                2 * kernel_size - 1))
            nn.init.trunc_normal_(self.rpb, std=.02, a=-2., b=2.)
        else:
            self.register_parameter('rpb', None)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C); H, W >= kernel_size * dilation."""
        b, h, w, c = x.shape
        qkv = self.qkv(x).view(b, h, w, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(3, 0, 4, 1, 2, 5).unbind(0)
        x = neighborhood_attention_2d(
            q, k, v, self.kernel_size, self.dilation, self.rpb, self.scale,
            dropout_p=self.attn_drop if self.training else 0.)
        x = x.permute(0, 2, 3, 1, 4).reshape(b, h, w, c)
        return self.proj_drop(self.proj(x))

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'kernel_size={self.kernel_size}, dilation={self.dilation}, '
                f'rel_pos_bias={self.rpb is not None}')
