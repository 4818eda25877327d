"""Dual-ViT's attention pieces: semantic-token init, dual-path attention, merge attention.

Numerics are the official ones (YehLi/ImageNetModel: ``classification/dualvit.py``, and the
det/seg backbones ``object_detection/dualvit.py`` and
``semantic_segmentation/mmseg/models/backbones/dualvit.py``, which compute the same stage
features). Every attention in Dual-ViT is
plain multi-head softmax attention, scale ``head_dim ** -0.5``, no bias, heads as contiguous
channel chunks of a ``(B, T, C)`` projection; the pieces differ in where queries, keys and
values come from:

* semantic init (stage 1 only): learned 8x8 query grid, bicubic-resized to the pooled grid,
  attends to the 7x7-average-pooled stem tokens (single head, scale ``C ** -0.5``), SK-style
  2-way gate;
* dual-path attention (official ``DualAttention``, stages 1-2): semantic self-attention,
  semantic <- pixel cross attention, semantic MLP, then pixel <- (updated) semantic cross
  attention; pixels never self-attend;
* merge attention (official ``Attention``, stages 3-4): ordinary MHSA over
  ``[pixels ; semantics]``.

Fast path: :func:`multi_head_attention` (``F.scaled_dot_product_attention``; fused, never builds
the (Tq, Tk) matrix on kernels that support it). Each piece has a ``*_reference`` written
straight from the definition: explicit per-head channel slices, explicit ``softmax(q k^T) v``,
LayerNorms written out with the official eps, explicit 7x7 block means. After the references:
the declaration (:func:`~mmattn.ops.registry.register_op`); the benchmark cases and the
attention pictures are in :mod:`mmattn.analysis.ops.dual`.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmcv.cnn.bricks.drop import drop_path
from torch import Tensor, nn

from mmattn.ops.common import check_heads, check_qkv, tokens_to_map
from mmattn.ops.registry import register_op
from mmattn.registry import register_model

QUERY_GRID = 8  # the learned semantic queries form an 8x8 grid (64 x C1 parameter)
POOL = 7  # semantic tokens summarise 7x7 blocks of the stride-4 map
LAYER_SCALE_INIT = 1e-6
# The official pieces build bare nn.LayerNorm (eps 1e-5: q_embed, proxy_ln, q_proxy_ln, p_ln,
# qkv_proxy); only the block and stage norms use the model's eps 1e-6.
EPS_BARE = 1e-5


def _check_attention_inputs(q: Tensor, k: Tensor, v: Tensor, num_heads: int) -> None:
    check_qkv(q, k, v, ('B', 'tokens', 'channels'), same_shape=False)
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError('q (B, Tq, C), k and v (B, Tk, C) must agree on B and C, got '
                         f'{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}')
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1 \
            or q.shape[2] % num_heads:
        raise ValueError(f'num_heads must be a positive integer dividing the channels '
                         f'({q.shape[2]}), got {num_heads!r}')


def multi_head_attention(q: Tensor, k: Tensor, v: Tensor, num_heads: int) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` per head, heads = contiguous ``C / num_heads`` chunks.

    Args:
        q (Tensor): queries (B, Tq, C), already projected.
        k (Tensor): keys (B, Tk, C).
        v (Tensor): values (B, Tk, C).
        num_heads (int): heads h; must divide C. Scale is ``(C / h) ** -0.5``.

    Returns:
        Tensor: (B, Tq, C), heads merged back in the same channel order.
    """
    _check_attention_inputs(q, k, v, num_heads)
    b, tq, c = q.shape
    d = c // num_heads
    # unflatten, not reshape(b, -1, ...): -1 is ambiguous for an empty batch
    q, k, v = (t.unflatten(-1, (num_heads, d)).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(b, tq, c)


Pair = Tuple[Tensor, Optional[Tensor]]  # (weight, bias) of a Linear or a LayerNorm


def _layer_scale(dims: int) -> nn.Parameter:
    return nn.Parameter(LAYER_SCALE_INIT * torch.ones(dims))


def pooled_grid(height: int, width: int, ceil_mode: bool = False) -> Tuple[int, int]:
    """Semantic-token grid (h', w') of a stride-4 map: floor division by 7 (remainders dropped,
    the official model); ``ceil_mode``: a partial last block makes a token of its own."""
    if ceil_mode:
        return -(-height // POOL), -(-width // POOL)
    return height // POOL, width // POOL


def resize_query(query: Tensor, grid: Tuple[int, int]) -> Tensor:
    """(h'*w', C1) queries: the (64, C1) 8x8 query grid (row-major) resized bicubically
    (align_corners=False). The downstream backbone always resizes; 8x8 -> 8x8 is an exact
    identity."""
    q = query.t().reshape(1, query.shape[1], QUERY_GRID, QUERY_GRID)
    q = F.interpolate(q, size=grid, mode='bicubic', align_corners=False)
    return q.flatten(2)[0].t()


def semantic_init(x: Tensor,
                  hw: Tuple[int, int],
                  query: Tensor,
                  q_embed_ln: Pair,
                  q_embed: Pair,
                  kv: Pair,
                  se_fc1: Pair,
                  se_fc2: Pair,
                  proxy_ln: Pair,
                  ceil_mode: bool = False) -> Tensor:
    """Stage-1 semantic tokens from the stem output: the 8x8 query grid resized to the pooled
    grid and embedded attends (one head, scale ``C1 ** -0.5``) to the 7x7-average-pooled
    tokens; an SK-style 2-way gate mixes the result with the pooled tokens; LayerNorm.

    Every (weight, bias) pair is a Linear's or a LayerNorm's (eps 1e-5, the official bare
    ``nn.LayerNorm``).

    Args:
        x (Tensor): LayerNorm-ed stem tokens (B, H1*W1, C1), row-major.
        hw (tuple[int, int]): (H1, W1).
        query (Tensor): (64, C1) learned queries, an 8x8 grid, row-major.
        q_embed_ln (tuple[Tensor, Tensor]): LayerNorm of the resized queries.
        q_embed (tuple[Tensor, Tensor]): Linear (C1, C1) after it.
        kv (tuple[Tensor, Tensor]): Linear (2 C1, C1) of the pooled tokens, keys first.
        se_fc1 (tuple[Tensor, Tensor]): first Linear (C1, C1) of the gate (then ReLU).
        se_fc2 (tuple[Tensor, Tensor]): second Linear (2 C1, C1) of the gate: the logits of the
            two branches, per channel.
        proxy_ln (tuple[Tensor, Tensor]): the final LayerNorm.
        ceil_mode (bool): False (the official model): one token per whole 7x7 block, the
            remainder rows/columns dropped, so the map must be at least 7x7. True: a partial
            last block makes a token too, the mean of its pixels inside the map. Defaults to
            False.

    Returns:
        Tensor: semantic tokens (B, M, C1), M = h'*w' (:func:`pooled_grid`).
    """
    b, _, c = x.shape
    grid = pooled_grid(*hw, ceil_mode)
    if min(grid) < 1:
        raise ValueError(f'the semantic-token init needs a stride-4 map of at least {POOL}x'
                         f'{POOL} (one token per {POOL}x{POOL} block), got {hw[0]}x{hw[1]}')
    # with ceil_mode (and no padding) torch divides a partial window by its in-map pixel count
    x_down = F.avg_pool2d(tokens_to_map(x, hw), POOL, POOL, 0, ceil_mode, True, None)
    x_down = x_down.flatten(2).transpose(1, 2)
    k, v = F.linear(x_down, *kv).chunk(2, dim=-1)  # first C1 channels are the keys
    q = F.layer_norm(resize_query(query, grid), (c, ), *q_embed_ln, EPS_BARE)
    q = F.linear(q, *q_embed).expand(b, -1, -1)
    s = multi_head_attention(q, k, v, 1)  # single head: scale C1 ** -0.5
    # 2-branch SK gate: softmax over the branches, per channel
    gate = F.linear(F.relu(F.linear((s + x_down).mean(dim=1), *se_fc1), inplace=True), *se_fc2)
    gate = gate.view(b, 2, 1, c).softmax(dim=1)
    return F.layer_norm(gate[:, 0] * s + gate[:, 1] * x_down, (c, ), *proxy_ln, EPS_BARE)


def dual_path_attention(xn: Tensor,
                        z: Tensor,
                        qkv_proxy_ln: Pair,
                        qkv_proxy: Pair,
                        q_proxy_ln: Pair,
                        q_proxy: Pair,
                        kv_proxy: Pair,
                        p_ln: Pair,
                        mlp_fc1: Pair,
                        mlp_fc2: Pair,
                        proxy_ln: Pair,
                        q: Pair,
                        kv: Pair,
                        proj: Pair,
                        gammas: Sequence[Tensor],
                        num_heads: int,
                        drop_path_rate: float = 0.,
                        training: bool = False) -> Tuple[Tensor, Tensor]:
    """The DualBlock's attention (official ``DualAttention``): semantic self-attention,
    semantic <- pixel cross attention, semantic MLP (each a residual update of the semantic
    tokens with its layer scale and stochastic depth), then pixel <- updated-semantic cross
    attention. Pixels never self-attend.

    Every (weight, bias) pair is a Linear's or a LayerNorm's (eps 1e-5); the names are the
    official module names.

    Args:
        xn (Tensor): the block's normalised pixel tokens (B, N, C).
        z (Tensor): semantic tokens (B, M, C).
        qkv_proxy_ln (tuple[Tensor, Tensor]): LayerNorm before the semantic qkv.
        qkv_proxy (tuple[Tensor, Tensor]): semantic qkv Linear (3C, C), rows [q | k | v].
        q_proxy_ln (tuple[Tensor, Tensor]): LayerNorm before the semantic queries of the cross
            attention.
        q_proxy (tuple[Tensor, Tensor]): their Linear (C, C).
        kv_proxy (tuple[Tensor, Tensor]): pixel keys and values Linear (2C, C).
        p_ln (tuple[Tensor, Tensor]): LayerNorm before the semantic MLP.
        mlp_fc1 (tuple[Tensor, Tensor]): MLP Linear (4C, C), then ReLU.
        mlp_fc2 (tuple[Tensor, Tensor]): MLP Linear (C, 4C).
        proxy_ln (tuple[Tensor, Tensor]): LayerNorm of the updated semantics before ``kv``.
        q (tuple[Tensor, Tensor]): pixel queries Linear (C, C).
        kv (tuple[Tensor, Tensor]): semantic keys and values Linear (2C, C).
        proj (tuple[Tensor, Tensor]): output projection of the pixel branch.
        gammas (Sequence[Tensor]): the three layer scales (C,) of the semantic updates.
        num_heads (int): heads of every attention; must divide C.
        drop_path_rate (float): stochastic depth of each semantic update (mmcv's
            ``drop_path``). Defaults to 0.
        training (bool): apply the stochastic depth. Defaults to False.

    Returns:
        tuple[Tensor, Tensor]: the pixel branch output (B, N, C) (before the block's layer
        scale and stochastic depth) and the updated semantic tokens (B, M, C).
    """
    g1, g2, g3 = gammas
    # semantic self-attention, no output projection
    qkv_s = F.linear(F.layer_norm(z, z.shape[-1:], *qkv_proxy_ln, EPS_BARE), *qkv_proxy)
    z = z + drop_path(g1 * multi_head_attention(*qkv_s.chunk(3, dim=-1), num_heads),
                      drop_path_rate, training)
    # semantic <- pixel cross attention, no output projection; O(M N C)
    k_p, v_p = F.linear(xn, *kv_proxy).chunk(2, dim=-1)
    q_s = F.linear(F.layer_norm(z, z.shape[-1:], *q_proxy_ln, EPS_BARE), *q_proxy)
    z = z + drop_path(g2 * multi_head_attention(q_s, k_p, v_p, num_heads), drop_path_rate,
                      training)
    hidden = F.relu(F.linear(F.layer_norm(z, z.shape[-1:], *p_ln, EPS_BARE), *mlp_fc1),
                    inplace=True)
    z = z + drop_path(g3 * F.linear(hidden, *mlp_fc2), drop_path_rate, training)
    # pixel <- updated semantic cross attention; O(N M C)
    k_s, v_s = F.linear(F.layer_norm(z, z.shape[-1:], *proxy_ln, EPS_BARE), *kv).chunk(2, dim=-1)
    return F.linear(multi_head_attention(F.linear(xn, *q), k_s, v_s, num_heads), *proj), z


def merge_attention(t: Tensor, q: Pair, kv: Pair, proj: Pair, num_heads: int) -> Tensor:
    """The MergeBlock's MHSA over ``[pixels ; semantics]`` (official ``Attention``).

    Args:
        t (Tensor): tokens (B, T, C).
        q (tuple[Tensor, Tensor]): query Linear (C, C).
        kv (tuple[Tensor, Tensor]): keys and values Linear (2C, C), keys first.
        proj (tuple[Tensor, Tensor]): output projection.
        num_heads (int): heads; must divide C.

    Returns:
        Tensor: (B, T, C).
    """
    return F.linear(multi_head_attention(F.linear(t, *q), *F.linear(t, *kv).chunk(2, dim=-1),
                                         num_heads), *proj)


def _pair(module: nn.Module) -> Pair:
    return module.weight, module.bias


@register_model
class SemanticTokenInit(nn.Module):
    """Stage-1 semantic tokens from the stem output (the official model-level ``q``,
    ``q_embed``, ``pool``, ``kv``, ``proxy_ln``, ``se``): the parameters of
    :func:`semantic_init`, which it calls.

    ``query`` is the official model-level ``q`` (an 8x8 grid, row-major); ``q_embed``, ``kv``,
    ``proxy_ln`` and ``se`` keep their official names. Every LayerNorm here has eps 1e-5.

    Args:
        embed_dims (int): stage-1 channels C1.
        ceil_mode (bool): False (the official model): one token per whole 7x7 block, the
            remainder rows/columns dropped, so the map must be at least 7x7. True: a partial
            last block makes a token too, the mean of its pixels inside the map (any map size;
            used by the plug-in block). Defaults to False.
    """

    def __init__(self, embed_dims: int, ceil_mode: bool = False):
        super().__init__()
        self.embed_dims = embed_dims
        self.ceil_mode = ceil_mode
        self.query = nn.Parameter(torch.empty(QUERY_GRID * QUERY_GRID, embed_dims))
        nn.init.trunc_normal_(self.query, std=.02, a=-2., b=2.)
        self.q_embed = nn.Sequential(nn.LayerNorm(embed_dims), nn.Linear(embed_dims, embed_dims))
        # with ceil_mode (and no padding) torch divides a partial window by its in-map pixel count
        self.pool = nn.AvgPool2d(POOL, stride=POOL, ceil_mode=ceil_mode)
        self.kv = nn.Linear(embed_dims, 2 * embed_dims)
        self.proxy_ln = nn.LayerNorm(embed_dims)
        self.se = nn.Sequential(
            nn.Linear(embed_dims, embed_dims), nn.ReLU(inplace=True),
            nn.Linear(embed_dims, 2 * embed_dims))

    def resized_query(self, grid: Tuple[int, int]) -> Tensor:
        """:func:`resize_query` of this module's query grid."""
        return resize_query(self.query, grid)

    def op_args(self) -> tuple:
        """The arguments of :func:`semantic_init` after ``(x, hw)``: this module's
        parameters and ``ceil_mode``."""
        return (self.query, _pair(self.q_embed[0]), _pair(self.q_embed[1]), _pair(self.kv),
                _pair(self.se[0]), _pair(self.se[2]), _pair(self.proxy_ln), self.ceil_mode)

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        """x: LayerNorm-ed stem tokens (B, H1*W1, C1) -> semantic tokens (B, M, C1)."""
        return semantic_init(x, hw, *self.op_args())


@register_model
class DualPathAttention(nn.Module):
    """The DualBlock's attention (official ``DualAttention``, official names): the parameters
    of :func:`dual_path_attention`, which it calls.

    ``forward(xn, z)`` takes the block's ``norm1(x)`` and the semantic tokens and returns the
    pixel branch output (before the block's ``gamma1``/DropPath) and the updated semantic
    tokens (their three residuals, layer scales ``gamma1..3`` and this module's own DropPath are
    applied here).

    Args:
        embed_dims (int): channels C.
        num_heads (int): heads; must divide C.
        drop_path (float): rate of the module's own DropPath (the block's rate, drawn
            independently). Defaults to 0.
    """

    def __init__(self, embed_dims: int, num_heads: int, drop_path: float = 0.):
        super().__init__()
        check_heads(embed_dims, num_heads)
        c = embed_dims
        self.num_heads = num_heads
        self.q = nn.Linear(c, c)
        self.kv = nn.Linear(c, 2 * c)
        self.proj = nn.Linear(c, c)
        self.q_proxy = nn.Linear(c, c)
        self.kv_proxy = nn.Linear(c, 2 * c)
        self.q_proxy_ln = nn.LayerNorm(c)
        self.p_ln = nn.LayerNorm(c)
        self.proxy_ln = nn.LayerNorm(c)
        self.mlp_proxy = nn.Sequential(nn.Linear(c, 4 * c), nn.ReLU(inplace=True),
                                       nn.Linear(4 * c, c))
        self.qkv_proxy = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, 3 * c))
        self.gamma1 = _layer_scale(c)
        self.gamma2 = _layer_scale(c)
        self.gamma3 = _layer_scale(c)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def op_args(self) -> tuple:
        """The arguments of :func:`dual_path_attention` after ``(xn, z)``: this module's
        parameters, heads, drop-path rate and mode."""
        return (_pair(self.qkv_proxy[0]), _pair(self.qkv_proxy[1]), _pair(self.q_proxy_ln),
                _pair(self.q_proxy), _pair(self.kv_proxy), _pair(self.p_ln),
                _pair(self.mlp_proxy[0]), _pair(self.mlp_proxy[2]), _pair(self.proxy_ln),
                _pair(self.q), _pair(self.kv), _pair(self.proj),
                (self.gamma1, self.gamma2, self.gamma3), self.num_heads,
                getattr(self.drop_path, 'drop_prob', 0.), self.training)

    def forward(self, xn: Tensor, z: Tensor) -> Tuple[Tensor, Tensor]:
        return dual_path_attention(xn, z, *self.op_args())


@register_model
class MergeAttention(nn.Module):
    """The MergeBlock's MHSA over ``[pixels ; semantics]`` (official ``Attention``): the
    parameters of :func:`merge_attention`, which it calls.

    Args:
        embed_dims (int): channels C.
        num_heads (int): heads; must divide C.
    """

    def __init__(self, embed_dims: int, num_heads: int):
        super().__init__()
        check_heads(embed_dims, num_heads)
        self.num_heads = num_heads
        self.q = nn.Linear(embed_dims, embed_dims)
        self.kv = nn.Linear(embed_dims, 2 * embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def op_args(self) -> tuple:
        """The arguments of :func:`merge_attention` after ``t``."""
        return _pair(self.q), _pair(self.kv), _pair(self.proj), self.num_heads

    def forward(self, t: Tensor) -> Tensor:
        return merge_attention(t, *self.op_args())


# ------------------------------------------------------------------------------ references


def multi_head_attention_reference(q: Tensor, k: Tensor, v: Tensor, num_heads: int,
                                   return_weights: bool = False):
    """Slow :func:`multi_head_attention`: one explicit softmax(q k^T * d^-0.5) v per head.

    Returns:
        Tensor | tuple: (B, Tq, C); with ``return_weights`` also the attention weights
        (B, heads, Tq, Tk), rows summing to 1.
    """
    _check_attention_inputs(q, k, v, num_heads)
    d = q.shape[2] // num_heads
    outs, weights = [], []
    for h in range(num_heads):
        chunk = slice(h * d, (h + 1) * d)
        attn = torch.softmax(q[..., chunk] @ k[..., chunk].transpose(1, 2) * d**-0.5, dim=-1)
        outs.append(attn @ v[..., chunk])
        weights.append(attn)
    out = torch.cat(outs, dim=-1)
    return (out, torch.stack(weights, 1)) if return_weights else out


def _linear(pair: Pair, x: Tensor) -> Tensor:
    return x @ pair[0].t() + pair[1]


def _ln(pair: Pair, x: Tensor, eps: float = EPS_BARE) -> Tensor:
    """LayerNorm with the official eps ``eps``, written out."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean)**2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * pair[0] + pair[1]


def _split(x: Tensor, parts: int) -> list:
    """Fused projection (B, T, parts*C) -> parts tensors: the first C channels come first."""
    c = x.shape[-1] // parts
    return [x[..., i * c:(i + 1) * c] for i in range(parts)]


def _drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth from its definition: in training, each sample's update is kept when
    ``floor(1 - rate + u)`` is 1 for its uniform draw ``u`` (probability ``1 - rate``; one
    draw per sample, in the order mmcv's ``drop_path`` draws) and then scaled by
    ``1 / (1 - rate)``."""
    if not training or rate == 0:
        return x
    u = torch.rand((x.shape[0], ) + (1, ) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    return x / (1 - rate) * ((1 - rate) + u).floor()


def semantic_init_reference(x: Tensor,
                            hw: Tuple[int, int],
                            query: Tensor,
                            q_embed_ln: Pair,
                            q_embed: Pair,
                            kv: Pair,
                            se_fc1: Pair,
                            se_fc2: Pair,
                            proxy_ln: Pair,
                            ceil_mode: bool = False,
                            return_weights: bool = False):
    """Slow, obviously right :func:`semantic_init` (same arguments), from the definition: 7x7
    average pool of the stem tokens -> k, v (single head); the 8x8 query grid resized
    bicubically to the pooled grid -> ``q_embed``; attention with scale ``C1 ** -0.5``; an
    SK-style softmax gate over (attention output, pooled tokens) from ``se``; ``proxy_ln``.

    Returns:
        Tensor | tuple: semantic tokens (B, M, C1), M = floor(H1/7) * floor(W1/7) (ceil in ceil
        mode); with ``return_weights`` also the query-to-pooled-token weights (B, 1, M, M).
    """
    b, _, c = x.shape
    gh, gw = pooled_grid(*hw, ceil_mode)
    # 1. mean of each 7x7 block of the (H1, W1) map; remainder rows / columns dropped (or, in
    # ceil mode, a partial block averaged over its pixels inside the map)
    grid = x.reshape(b, *hw, c)
    blocks = [grid[:, i * POOL:(i + 1) * POOL, j * POOL:(j + 1) * POOL]
              for i in range(gh) for j in range(gw)]
    x_down = torch.stack([block.mean(dim=(1, 2)) for block in blocks], 1)
    # 2. keys / values, single head
    k, v = _split(_linear(kv, x_down), 2)
    # 3. raw 8x8 parameter (row-major) resized bicubically, then q_embed = LN(eps 1e-5) + Linear
    q = query.t().reshape(1, c, QUERY_GRID, QUERY_GRID)
    q = F.interpolate(q, size=(gh, gw), mode='bicubic', align_corners=False)
    q = _linear(q_embed, _ln(q_embed_ln, q.reshape(c, gh * gw).t()))
    # 4. single-head attention, scale C1 ** -0.5, query shared by the batch
    attn = torch.softmax(q @ k.transpose(1, 2) * c**-0.5, dim=-1)
    s = attn @ v
    # 5. gate: se(mean(s + x_down)) -> (2, C1), softmax over the 2 branches
    y = (s + x_down).mean(dim=1)
    g = _linear(se_fc2, torch.relu(_linear(se_fc1, y))).reshape(b, 2, c)
    g = torch.exp(g) / torch.exp(g).sum(dim=1, keepdim=True)
    z = g[:, 0, None, :] * s + g[:, 1, None, :] * x_down
    z = _ln(proxy_ln, z)  # 6.
    return (z, attn[:, None]) if return_weights else z


def dual_path_attention_reference(xn: Tensor,
                                  z: Tensor,
                                  qkv_proxy_ln: Pair,
                                  qkv_proxy: Pair,
                                  q_proxy_ln: Pair,
                                  q_proxy: Pair,
                                  kv_proxy: Pair,
                                  p_ln: Pair,
                                  mlp_fc1: Pair,
                                  mlp_fc2: Pair,
                                  proxy_ln: Pair,
                                  q: Pair,
                                  kv: Pair,
                                  proj: Pair,
                                  gammas: Sequence[Tensor],
                                  num_heads: int,
                                  drop_path_rate: float = 0.,
                                  training: bool = False,
                                  return_weights: bool = False):
    """Slow, obviously right :func:`dual_path_attention` (same arguments), from the
    definition: semantic self-attention (``qkv_proxy``, no output projection), semantic <-
    pixel cross attention (``q_proxy_ln``, ``q_proxy``, ``kv_proxy``), semantic MLP (``p_ln``,
    ``mlp_fc1``, ``mlp_fc2``), each with its layer scale (and, in training, stochastic depth
    drawn as the op draws it), then pixel <- updated-semantic attention (``q``, ``proxy_ln``,
    ``kv``, ``proj``).

    Returns:
        tuple: (pixel output (B, N, C), updated semantics (B, M, C)); with ``return_weights``
        a third item, a dict of weights: ``'semantic_self'`` (B, heads, M, M),
        ``'semantic_from_pixel'`` (B, heads, M, N) and ``'pixel_from_semantic'``
        (B, heads, N, M) (row = query token, N = H*W row-major pixels, M = h'*w' semantics).
    """
    g1, g2, g3 = gammas
    q_s, k_s, v_s = _split(_linear(qkv_proxy, _ln(qkv_proxy_ln, z)), 3)
    sa, w_self = multi_head_attention_reference(q_s, k_s, v_s, num_heads, return_weights=True)
    z = z + _drop_path(g1 * sa, drop_path_rate, training)
    k_p, v_p = _split(_linear(kv_proxy, xn), 2)
    ca, w_sp = multi_head_attention_reference(
        _linear(q_proxy, _ln(q_proxy_ln, z)), k_p, v_p, num_heads, return_weights=True)
    z = z + _drop_path(ca * g2, drop_path_rate, training)
    hidden = torch.relu(_linear(mlp_fc1, _ln(p_ln, z)))
    z = z + _drop_path(g3 * _linear(mlp_fc2, hidden), drop_path_rate, training)
    k_z, v_z = _split(_linear(kv, _ln(proxy_ln, z)), 2)
    out, w_ps = multi_head_attention_reference(_linear(q, xn), k_z, v_z, num_heads,
                                               return_weights=True)
    out = _linear(proj, out)
    if return_weights:
        return out, z, dict(semantic_self=w_self, semantic_from_pixel=w_sp,
                            pixel_from_semantic=w_ps)
    return out, z


def merge_attention_reference(t: Tensor, q: Pair, kv: Pair, proj: Pair, num_heads: int,
                              return_weights: bool = False):
    """Slow, obviously right :func:`merge_attention` (same arguments): MHSA over all tokens.

    Returns:
        Tensor | tuple: (B, T, C); with ``return_weights`` also the weights (B, heads, T, T),
        T = N + M tokens, pixels first.
    """
    k, v = _split(_linear(kv, t), 2)
    out, weights = multi_head_attention_reference(_linear(q, t), k, v, num_heads,
                                                  return_weights=True)
    out = _linear(proj, out)
    return (out, weights) if return_weights else out


# ------------------------------------------------------------------ the declaration

# No MAC formula: every attention runs through SDPA, whose MACs the dispatch counter of
# mmattn.analysis counts with torch's formula, the definition's.
register_op('dual',
            references={multi_head_attention: multi_head_attention_reference,
                        semantic_init: semantic_init_reference,
                        dual_path_attention: dual_path_attention_reference,
                        merge_attention: merge_attention_reference},
            tools='mmattn.analysis.ops.dual')
