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
from typing import Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
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


def _layer_scale(dims: int) -> nn.Parameter:
    return nn.Parameter(LAYER_SCALE_INIT * torch.ones(dims))


def pooled_grid(height: int, width: int, ceil_mode: bool = False) -> Tuple[int, int]:
    """Semantic-token grid (h', w') of a stride-4 map: floor division by 7 (remainders dropped,
    the official model); ``ceil_mode``: a partial last block makes a token of its own."""
    if ceil_mode:
        return -(-height // POOL), -(-width // POOL)
    return height // POOL, width // POOL


@register_model
class SemanticTokenInit(nn.Module):
    """Stage-1 semantic tokens from the stem output (the official model-level ``q``,
    ``q_embed``, ``pool``, ``kv``, ``proxy_ln``, ``se``).

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
        """(h'*w', C1) queries: the 8x8 grid resized bicubically (align_corners=False). The
        downstream backbone always resizes; 8x8 -> 8x8 is an exact identity."""
        q = self.query.t().reshape(1, self.embed_dims, QUERY_GRID, QUERY_GRID)
        q = F.interpolate(q, size=grid, mode='bicubic', align_corners=False)
        return q.flatten(2)[0].t()

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        """x: LayerNorm-ed stem tokens (B, H1*W1, C1) -> semantic tokens (B, M, C1)."""
        b, _, c = x.shape
        grid = pooled_grid(*hw, self.ceil_mode)
        if min(grid) < 1:
            raise ValueError(f'the semantic-token init needs a stride-4 map of at least {POOL}x'
                             f'{POOL} (one token per {POOL}x{POOL} block), got {hw[0]}x{hw[1]}')
        x_down = self.pool(tokens_to_map(x, hw)).flatten(2).transpose(1, 2)
        k, v = self.kv(x_down).chunk(2, dim=-1)  # first C1 channels are the keys
        q = self.q_embed(self.resized_query(grid)).expand(b, -1, -1)
        s = multi_head_attention(q, k, v, 1)  # single head: scale C1 ** -0.5
        # 2-branch SK gate: softmax over the branches, per channel
        gate = self.se((s + x_down).mean(dim=1)).view(b, 2, 1, c).softmax(dim=1)
        return self.proxy_ln(gate[:, 0] * s + gate[:, 1] * x_down)


@register_model
class DualPathAttention(nn.Module):
    """The DualBlock's attention (official ``DualAttention``, official names).

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

    def forward(self, xn: Tensor, z: Tensor) -> Tuple[Tensor, Tensor]:
        heads = self.num_heads
        # semantic self-attention, no output projection
        z = z + self.drop_path(self.gamma1 * multi_head_attention(
            *self.qkv_proxy(z).chunk(3, dim=-1), heads))
        # semantic <- pixel cross attention, no output projection; O(M N C)
        k_p, v_p = self.kv_proxy(xn).chunk(2, dim=-1)
        z = z + self.drop_path(self.gamma2 * multi_head_attention(
            self.q_proxy(self.q_proxy_ln(z)), k_p, v_p, heads))
        z = z + self.drop_path(self.gamma3 * self.mlp_proxy(self.p_ln(z)))
        # pixel <- updated semantic cross attention; O(N M C)
        k_s, v_s = self.kv(self.proxy_ln(z)).chunk(2, dim=-1)
        return self.proj(multi_head_attention(self.q(xn), k_s, v_s, heads)), z


@register_model
class MergeAttention(nn.Module):
    """The MergeBlock's MHSA over ``[pixels ; semantics]`` (official ``Attention``).

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

    def forward(self, t: Tensor) -> Tensor:
        return self.proj(multi_head_attention(self.q(t), *self.kv(t).chunk(2, dim=-1),
                                              self.num_heads))


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


def _linear(module: nn.Linear, x: Tensor) -> Tensor:
    return x @ module.weight.t() + module.bias


def _ln(module: nn.LayerNorm, x: Tensor, eps: float = EPS_BARE) -> Tensor:
    """LayerNorm with the official eps ``eps`` (not read from the module), written out."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean)**2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * module.weight + module.bias


def _split(x: Tensor, parts: int) -> list:
    """Fused projection (B, T, parts*C) -> parts tensors: the first C channels come first."""
    c = x.shape[-1] // parts
    return [x[..., i * c:(i + 1) * c] for i in range(parts)]


def semantic_init_reference(module: SemanticTokenInit, x: Tensor, hw: Tuple[int, int],
                            return_weights: bool = False):
    """:class:`SemanticTokenInit` from the definition: 7x7 average pool of the stem tokens ->
    k, v (single head); the 8x8 query grid resized bicubically to the pooled grid ->
    ``q_embed``; attention with scale ``C1 ** -0.5``; an SK-style softmax gate over
    (attention output, pooled tokens) from ``se``; ``proxy_ln``.

    Returns:
        Tensor | tuple: semantic tokens (B, M, C1), M = floor(H1/7) * floor(W1/7) (ceil in ceil
        mode); with ``return_weights`` also the query-to-pooled-token weights (B, 1, M, M).
    """
    b, _, c = x.shape
    gh, gw = pooled_grid(*hw, module.ceil_mode)
    # 1. mean of each 7x7 block of the (H1, W1) map; remainder rows / columns dropped (or, in
    # ceil mode, a partial block averaged over its pixels inside the map)
    grid = x.reshape(b, *hw, c)
    blocks = [grid[:, i * POOL:(i + 1) * POOL, j * POOL:(j + 1) * POOL]
              for i in range(gh) for j in range(gw)]
    x_down = torch.stack([block.mean(dim=(1, 2)) for block in blocks], 1)
    # 2. keys / values, single head
    k, v = _split(_linear(module.kv, x_down), 2)
    # 3. raw 8x8 parameter (row-major) resized bicubically, then q_embed = LN(eps 1e-5) + Linear
    q = module.query.t().reshape(1, c, QUERY_GRID, QUERY_GRID)
    q = F.interpolate(q, size=(gh, gw), mode='bicubic', align_corners=False)
    q = _linear(module.q_embed[1], _ln(module.q_embed[0], q.reshape(c, gh * gw).t()))
    # 4. single-head attention, scale C1 ** -0.5, query shared by the batch
    attn = torch.softmax(q @ k.transpose(1, 2) * c**-0.5, dim=-1)
    s = attn @ v
    # 5. gate: se(mean(s + x_down)) -> (2, C1), softmax over the 2 branches
    y = (s + x_down).mean(dim=1)
    g = _linear(module.se[2], torch.relu(_linear(module.se[0], y))).reshape(b, 2, c)
    g = torch.exp(g) / torch.exp(g).sum(dim=1, keepdim=True)
    z = g[:, 0, None, :] * s + g[:, 1, None, :] * x_down
    z = _ln(module.proxy_ln, z)  # 6.
    return (z, attn[:, None]) if return_weights else z


def dual_path_attention_reference(module: DualPathAttention, xn: Tensor, z: Tensor,
                                  return_weights: bool = False):
    """:class:`DualPathAttention` from the definition, eval mode: semantic self-attention
    (``qkv_proxy``, no output projection), semantic <- pixel cross attention (``q_proxy_ln``,
    ``q_proxy``, ``kv_proxy``), semantic MLP (``p_ln``, ``mlp_proxy``), each with its layer
    scale, then pixel <- updated-semantic attention (``q``, ``proxy_ln``, ``kv``, ``proj``).

    Returns:
        tuple: (pixel output (B, N, C), updated semantics (B, M, C)); with ``return_weights``
        a third item, a dict of weights: ``'semantic_self'`` (B, heads, M, M),
        ``'semantic_from_pixel'`` (B, heads, M, N) and ``'pixel_from_semantic'``
        (B, heads, N, M) (row = query token, N = H*W row-major pixels, M = h'*w' semantics).
    """
    heads, m = module.num_heads, module
    q, k, v = _split(_linear(m.qkv_proxy[1], _ln(m.qkv_proxy[0], z)), 3)
    sa, w_self = multi_head_attention_reference(q, k, v, heads, return_weights=True)
    z = z + m.gamma1 * sa
    k_p, v_p = _split(_linear(m.kv_proxy, xn), 2)
    ca, w_sp = multi_head_attention_reference(
        _linear(m.q_proxy, _ln(m.q_proxy_ln, z)), k_p, v_p, heads, return_weights=True)
    z = z + ca * m.gamma2
    hidden = torch.relu(_linear(m.mlp_proxy[0], _ln(m.p_ln, z)))
    z = z + m.gamma3 * _linear(m.mlp_proxy[2], hidden)
    k_s, v_s = _split(_linear(m.kv, _ln(m.proxy_ln, z)), 2)
    out, w_ps = multi_head_attention_reference(_linear(m.q, xn), k_s, v_s, heads,
                                               return_weights=True)
    out = _linear(m.proj, out)
    if return_weights:
        return out, z, dict(semantic_self=w_self, semantic_from_pixel=w_sp,
                            pixel_from_semantic=w_ps)
    return out, z


def merge_attention_reference(module: MergeAttention, t: Tensor, return_weights: bool = False):
    """:class:`MergeAttention` from the definition: MHSA over all tokens.

    Returns:
        Tensor | tuple: (B, T, C); with ``return_weights`` also the weights (B, heads, T, T),
        T = N + M tokens, pixels first.
    """
    k, v = _split(_linear(module.kv, t), 2)
    out, weights = multi_head_attention_reference(_linear(module.q, t), k, v, module.num_heads,
                                                  return_weights=True)
    out = _linear(module.proj, out)
    return (out, weights) if return_weights else out


# ------------------------------------------------------------------ the declaration

# No MAC formula: every attention runs through SDPA, whose MACs the dispatch counter of
# mmattn.analysis counts with torch's formula, the definition's.
register_op('dual', references={multi_head_attention: multi_head_attention_reference},
            tools='mmattn.analysis.ops.dual')
