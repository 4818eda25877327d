"""Bi-level routing attention (BRA, BiFormer, CVPR 2023) and BiFormer's stage-4 attention.

Layout: NHWC in and out, as in the official legacy op every released checkpoint was trained with.

Functional ops on plain tensors:

* :func:`bi_level_routing_attention` - the core: region routing, gather, token-to-token
  attention (region-divisible q/k/v, no projections);
* :func:`bra` - the layer: zero-pad the normalised tokens (bottom/right), fused qkv, the core,
  LePE on the padded V map, output projection, crop;
* :func:`global_attention_lepe` - stage 4, plain MHSA plus LePE of the input.

The modules :class:`BiLevelRoutingAttention` and :class:`GlobalAttentionLePE` hold the
parameters and call :func:`bra` and :func:`global_attention_lepe`. Each functional op has a
reference with its parameters, straight from the definition (loops over regions, explicit
softmax; slow and obviously right, used by the tests):
:func:`bi_level_routing_attention_reference`, :func:`bra_reference`,
:func:`global_attention_lepe_reference`. The file ends with its declaration
(:func:`~mmattn.ops.registry.register_op`); the official formulations the benchmark compares
against, the benchmark cases and the attention pictures are in
:mod:`mmattn.analysis.ops.routing`.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmattn.ops.common import check_heads
from mmattn.ops.depthwise import DepthwiseConv2d, depthwise_conv2d
from mmattn.ops.registry import register_op
from mmattn.registry import register_model


def _check_routing_args(height, width, n_win, topk, channels, num_heads):
    if height % n_win or width % n_win:
        raise ValueError(
            f'BRA needs H and W divisible by n_win={n_win}, got {height}x{width}; '
            'use auto_pad=True (as the official det/seg backbones do) for other sizes')
    if not 1 <= topk <= n_win * n_win:
        raise ValueError(f'topk must be in [1, n_win**2={n_win * n_win}], got {topk}')
    if channels % num_heads:
        raise ValueError(f'channels ({channels}) must be divisible by num_heads ({num_heads})')


def route_regions(q_region, k_region, topk, scale):
    """Top-k key regions per query region; no gradient flows into routing (official detach)."""
    affinity = (q_region.detach() * scale) @ k_region.detach().transpose(-1, -2)
    return affinity.topk(topk, dim=-1).indices


# The CPU flash-attention kernels that ``F.scaled_dot_product_attention`` dispatches to on CPU.
_FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_FLASH_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
ROUTED_CHUNK_BYTES = 2 << 20  # routed K (and V) gathered at a time by the CPU path


def _chunked_path(t):
    """The CPU eager path (:class:`_RoutedRegionAttention`); tracing, torch.compile, ONNX
    export and other devices take the one-gather form."""
    return (t.device.type == 'cpu' and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling())


class _RoutedRegionAttention(torch.autograd.Function):
    """SDPA of every query region over its routed key regions, a chunk of query regions at a
    time: the routed K and V of a chunk are gathered (``ROUTED_CHUNK_BYTES`` each), attended
    to and dropped, in the forward and again in the backward, whose K / V gradients are
    index-added chunk by chunk. The k-fold routed K/V are never stored whole (84 MB each per
    stage-3 layer of BiFormer-S at 800x1216, and as much again for their gradients): on CPU
    the one-gather form spends most of its time allocating, faulting in and zero-filling those
    buffers. The kernels are the ones ``F.scaled_dot_product_attention`` runs on the whole
    gather, applied to the same rows in the same order, so outputs and gradients are the same
    bits.

    Args (forward):
        q_reg (Tensor): (B, T, C) query regions.
        k_reg, v_reg (Tensor): (M, T, C) key and value regions.
        rows (Tensor): (B * topk,) the rows of ``k_reg`` routed to each query region in turn.
        topk, num_heads (int), scale (float): as in :func:`bi_level_routing_attention`.

    Returns:
        Tensor: (B, T, C) output.
    """

    @staticmethod
    def _chunks(q_reg, k_reg, v_reg, rows, topk, num_heads):
        """(start, end, row ids, q, routed k, routed v) per chunk, in the (b, heads, L, d)
        views the kernels read."""
        b, t, c = q_reg.shape
        d = c // num_heads
        step = max(1, ROUTED_CHUNK_BYTES // (topk * t * c * q_reg.element_size()))
        for s in range(0, b, step):
            e = min(b, s + step)
            ids = rows[s * topk:e * topk]
            k_sel, v_sel = (x.index_select(0, ids).view(e - s, topk * t, num_heads, d)
                            .transpose(1, 2) for x in (k_reg, v_reg))
            yield s, e, ids, q_reg[s:e].view(e - s, t, num_heads, d).transpose(1, 2), k_sel, v_sel

    @staticmethod
    def forward(ctx, q_reg, k_reg, v_reg, rows, topk, num_heads, scale):
        b, t, c = q_reg.shape
        out = q_reg.new_empty(b, t, c)
        heads_view = out.view(b, t, num_heads, c // num_heads).transpose(1, 2)
        lse = q_reg.new_empty(b, num_heads, t)
        for s, e, _, q_h, k_sel, v_sel in _RoutedRegionAttention._chunks(
                q_reg, k_reg, v_reg, rows, topk, num_heads):
            heads_view[s:e], lse[s:e] = _FLASH(q_h, k_sel, v_sel, scale=scale)
        ctx.save_for_backward(q_reg, k_reg, v_reg, rows, out, lse)
        ctx.config = topk, num_heads, scale
        return out

    @staticmethod
    def backward(ctx, grad):
        q_reg, k_reg, v_reg, rows, out, lse = ctx.saved_tensors
        topk, num_heads, scale = ctx.config
        b, t, c = q_reg.shape
        d = c // num_heads

        def heads(x):  # (b, T, C) -> (b, heads, T, d)
            return x.view(x.shape[0], t, num_heads, d).transpose(1, 2)

        grad = grad.contiguous()
        grad_q = torch.empty_like(q_reg)
        grad_k, grad_v = torch.zeros_like(k_reg), torch.zeros_like(v_reg)
        for s, e, ids, q_h, k_sel, v_sel in _RoutedRegionAttention._chunks(
                q_reg, k_reg, v_reg, rows, topk, num_heads):
            g_q, g_k, g_v = _FLASH_BACKWARD(heads(grad[s:e]), q_h, k_sel, v_sel, heads(out[s:e]),
                                            lse[s:e], 0.0, False, scale=scale)
            heads(grad_q[s:e]).copy_(g_q)
            grad_k.index_add_(0, ids, g_k.transpose(1, 2).reshape(-1, t, c))
            grad_v.index_add_(0, ids, g_v.transpose(1, 2).reshape(-1, t, c))
        return grad_q, grad_k, grad_v, None, None, None, None


def bi_level_routing_attention(q, k, v, n_win, topk, num_heads, scale=None, out_size=None):
    """Region routing + token-to-token attention over the gathered top-k regions.

    Args:
        q (Tensor): (N, H, W, C) queries; H and W divisible by ``n_win``.
        k (Tensor): (N, H, W, C) keys.
        v (Tensor): (N, H, W, C) values.
        n_win (int): regions per side S (S*S regions, region size H/S x W/S).
        topk (int): key regions gathered per query region, 1 <= topk <= S*S.
        num_heads (int): heads; channels are split head-major.
        scale (float, optional): logit scale. Default ``C ** -0.5``: the official BRA scales by
            the full qk width, not the head width, and the released weights depend on it.
        out_size (tuple[int, int], optional): (h, w): return only the top-left h x w part of
            the output (the layer's map before its padding). Query regions that lie wholly
            outside it are not computed on CPU (their outputs would be cropped); the routing is
            still computed, and returned, for every region. Default: the whole map.

    Returns:
        tuple[Tensor, Tensor]: output (N, h, w, C) ((N, H, W, C) by default) and routed region
        indices (N, S*S, topk).
    """
    n, height, width, channels = q.shape
    _check_routing_args(height, width, n_win, topk, channels, num_heads)
    scale = channels**-0.5 if scale is None else scale
    rh, rw = height // n_win, width // n_win
    num_regions, region_tokens, head_dim = n_win * n_win, rh * rw, channels // num_heads
    out_h, out_w = (height, width) if out_size is None else out_size

    def to_regions(t):  # (N, H, W, C') -> (N, R, T, C'), regions row-major, tokens row-major
        t = t.reshape(n, n_win, rh, n_win, rw, t.shape[-1]).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(n, num_regions, region_tokens, t.shape[-1])

    q_reg, k_reg, v_reg = to_regions(q), to_regions(k), to_regions(v)
    idx = route_regions(q_reg.mean(2), k_reg.mean(2), topk, scale)
    # rows of the (N*R, T, C) key regions routed to each query region
    flat_idx = idx + torch.arange(n, device=idx.device).view(n, 1, 1) * num_regions
    k_reg, v_reg = (t.reshape(n * num_regions, region_tokens, channels) for t in (k_reg, v_reg))

    if _chunked_path(q):
        grid_h, grid_w = -(-out_h // rh), -(-out_w // rw)  # query regions overlapping (h, w)
        q_reg = q_reg.view(n, n_win, n_win, region_tokens, channels)[:, :grid_h, :grid_w]
        rows = flat_idx.view(n, n_win, n_win, topk)[:, :grid_h, :grid_w].reshape(-1)
        out = _RoutedRegionAttention.apply(q_reg.reshape(-1, region_tokens, channels), k_reg,
                                           v_reg, rows, topk, num_heads, scale)
    else:
        # Gather the routed regions straight into the layout SDPA reads: rows (N*R*topk, T, C)
        # viewed as (N*R, heads, topk*T, d) - a strided view, no further copy of the k-fold K/V.
        grid_h, grid_w = n_win, n_win
        k_sel, v_sel = (t.index_select(0, flat_idx.reshape(-1)).view(
            n * num_regions, topk * region_tokens, num_heads, head_dim).transpose(1, 2)
            for t in (k_reg, v_reg))
        q_heads = q_reg.reshape(n * num_regions, region_tokens, num_heads, head_dim)
        out = F.scaled_dot_product_attention(q_heads.transpose(1, 2), k_sel, v_sel, scale=scale)
        out = out.transpose(1, 2)
    out = out.reshape(n, grid_h, grid_w, rh, rw, channels).permute(0, 1, 3, 2, 4, 5)
    out = out.reshape(n, grid_h * rh, grid_w * rw, channels)
    return out[:, :out_h, :out_w], idx


def _pad_bottom_right(x, n_win):
    # Unconditional (a zero pad is a copy): a branch on the size would be frozen into an
    # exported or compiled graph with dynamic H, W. No negative operands in the size arithmetic:
    # ONNX's integer Div / Mod do not floor like Python's // and %.
    pad_b = (n_win - x.shape[1] % n_win) % n_win
    pad_r = (n_win - x.shape[2] % n_win) % n_win
    return F.pad(x, (0, 0, 0, pad_r, 0, pad_b))


def bra(x: Tensor,
        qkv_weight: Tensor,
        qkv_bias: Optional[Tensor],
        lepe_weight: Tensor,
        lepe_bias: Optional[Tensor],
        proj_weight: Tensor,
        proj_bias: Optional[Tensor],
        n_win: int,
        topk: int,
        num_heads: int,
        auto_pad: bool = True,
        scale: Optional[float] = None) -> Tuple[Tensor, Tensor]:
    """The bi-level routing attention layer on tensors: zero-pad bottom/right, the fused qkv
    projection, :func:`bi_level_routing_attention`, LePE (depthwise conv) of the padded V map,
    the output projection, crop.

    Args:
        x (Tensor): (N, H, W, C) normalised tokens.
        qkv_weight (Tensor): fused projection weight (3C, C), rows [q | k | v].
        qkv_bias (Tensor, optional): its bias (3C,).
        lepe_weight (Tensor): depthwise LePE weight (C, 1, k, k), k odd, applied to the padded
            V map.
        lepe_bias (Tensor, optional): its bias (C,).
        proj_weight (Tensor): output projection weight (C, C).
        proj_bias (Tensor, optional): its bias (C,).
        n_win (int): regions per side S.
        topk (int): routed key regions per query region.
        num_heads (int): heads.
        auto_pad (bool): pad the map to a multiple of ``n_win`` before the projection (the
            padded tokens are zeros *before* qkv, so they carry the qkv bias and take part in
            region means, routing, attention and LePE, as in the official det/seg backbones) and
            crop after. Without it H and W must be multiples of ``n_win``. Defaults to True.
        scale (float, optional): logit scale; ``C ** -0.5`` by default (see
            :func:`bi_level_routing_attention`).

    Returns:
        tuple[Tensor, Tensor]: output (N, H, W, C) and routed region indices (N, S*S, topk).
    """
    height, width = x.shape[1:3]
    if auto_pad:
        x = _pad_bottom_right(x, n_win)
    q, k, v = F.linear(x, qkv_weight, qkv_bias).chunk(3, dim=-1)
    v = v.contiguous()  # LePE's convolution would copy the strided chunk; its backward
    # then finds a channels-last map (see mmattn/ops/depthwise.py)
    # only the unpadded part of the map is kept: attention and the projection skip the rest
    out, idx = bi_level_routing_attention(q, k, v, n_win, topk, num_heads, scale,
                                          out_size=(height, width))
    lepe = depthwise_conv2d(v.permute(0, 3, 1, 2), lepe_weight, lepe_bias).permute(0, 2, 3, 1)
    return F.linear(out + lepe[:, :height, :width], proj_weight, proj_bias), idx


def global_attention_lepe(x: Tensor,
                          qkv_weight: Tensor,
                          lepe_weight: Tensor,
                          lepe_bias: Optional[Tensor],
                          proj_weight: Tensor,
                          proj_bias: Optional[Tensor],
                          num_heads: int = 8) -> Tensor:
    """BiFormer's stage-4 attention on tensors: global MHSA with a bias-free qkv projection
    and scale ``(C / heads) ** -0.5``, plus the depthwise LePE of the attention *input* (not of
    V), then the output projection.

    Args:
        x (Tensor): (N, H, W, C) normalised tokens.
        qkv_weight (Tensor): fused projection weight (3C, C), rows [q | k | v], heads
            contiguous inside each.
        lepe_weight (Tensor): depthwise LePE weight (C, 1, k, k), k odd.
        lepe_bias (Tensor, optional): its bias (C,).
        proj_weight (Tensor): output projection weight (C, C).
        proj_bias (Tensor, optional): its bias (C,).
        num_heads (int): heads (8 in every official model). Defaults to 8.

    Returns:
        Tensor: (N, H, W, C).
    """
    n, height, width, channels = x.shape
    qkv = F.linear(x, qkv_weight).reshape(n, height * width, 3, num_heads, channels // num_heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v)
    out = out.transpose(1, 2).reshape(n, height, width, channels)
    out = out + depthwise_conv2d(x.permute(0, 3, 1, 2), lepe_weight, lepe_bias).permute(0, 2, 3, 1)
    return F.linear(out, proj_weight, proj_bias)


@register_model
class BiLevelRoutingAttention(nn.Module):
    """Bi-level routing attention layer (BiFormer stages 1-3), NHWC in and out: the
    parameters of :func:`bra`, which it calls.

    Args:
        embed_dims (int): channels C (= qk dim in every released model).
        num_heads (int): heads (official: C // 32).
        n_win (int): regions per side S. Official: 7 (ImageNet), 16 (COCO), 8 (ADE20K).
        topk (int): routed key regions per query region.
        lepe_kernel (int): LePE depthwise kernel ("side_dwconv"). Default 5.
        auto_pad (bool): zero-pad bottom/right to a multiple of ``n_win`` before the qkv
            projection and crop after (official dense behaviour). Without it H, W must divide.
    """

    def __init__(self, embed_dims, num_heads, n_win, topk, lepe_kernel=5, auto_pad=True):
        super().__init__()
        check_heads(embed_dims, num_heads)
        if not 1 <= topk <= n_win * n_win:
            raise ValueError(f'topk must be in [1, n_win**2={n_win * n_win}], got {topk}')
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.n_win, self.topk, self.auto_pad = n_win, topk, auto_pad
        self.scale = embed_dims**-0.5
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims)
        self.lepe = DepthwiseConv2d(embed_dims, lepe_kernel)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x, return_routing=False):
        out, idx = bra(x, self.qkv.weight, self.qkv.bias, self.lepe.weight, self.lepe.bias,
                       self.proj.weight, self.proj.bias, self.n_win, self.topk, self.num_heads,
                       self.auto_pad, self.scale)
        return (out, idx) if return_routing else out

    def extra_repr(self):
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, n_win={self.n_win}, '
                f'topk={self.topk}, auto_pad={self.auto_pad}')


@register_model
class GlobalAttentionLePE(nn.Module):
    """BiFormer stage-4 attention: global MHSA with a bias-free qkv and LePE on the *input*
    (the parameters of :func:`global_attention_lepe`, which it calls).

    The paper writes stage-4 top-k as S*S, but the released code uses this module instead
    (8 heads whatever head_dim says, per-head scale, LePE of the attention input x, not of V).

    Args:
        embed_dims (int): channels C.
        num_heads (int): heads. Official: 8.
        lepe_kernel (int): LePE depthwise kernel. Default 5.
    """

    def __init__(self, embed_dims, num_heads=8, lepe_kernel=5):
        super().__init__()
        check_heads(embed_dims, num_heads)
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=False)
        self.lepe = DepthwiseConv2d(embed_dims, lepe_kernel)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x):
        return global_attention_lepe(x, self.qkv.weight, self.lepe.weight, self.lepe.bias,
                                     self.proj.weight, self.proj.bias, self.num_heads)


# ------------------------------------------------------------------------------------------
# References, straight from the definition (the BRA of the official ops/bra_legacy.py and the
# official stage-4 AttentionLePE). Slow; for tests.
# ------------------------------------------------------------------------------------------


def bi_level_routing_attention_reference(q, k, v, n_win, topk, num_heads, scale=None,
                                         return_weights=False):
    """Slow, obviously right :func:`bi_level_routing_attention` (same arguments): per-region
    loops, region means, top-k routing, one explicit softmax per region and head.

    Returns:
        tuple: output (N, H, W, C) and routed indices (N, S*S, topk); with ``return_weights``
        also the attention weights as a dense (N, heads, H*W, H*W) matrix (row-major pixels),
        zero outside each query's routed regions.
    """
    n, height, width, c = q.shape
    _check_routing_args(height, width, n_win, topk, c, num_heads)
    rh, rw, d = height // n_win, width // n_win, c // num_heads
    scale = c**-0.5 if scale is None else scale

    def region(t, b, r):  # tokens of region r = row_block * S + col_block, row-major: (T, C)
        j, i = divmod(r, n_win)
        return t[b, j * rh:(j + 1) * rh, i * rw:(i + 1) * rw].reshape(rh * rw, c)

    def region_pixels(r):  # row-major pixel indices of region r, in region token order
        j, i = divmod(r, n_win)
        rows, cols = torch.arange(j * rh, (j + 1) * rh), torch.arange(i * rw, (i + 1) * rw)
        return (rows[:, None] * width + cols[None]).reshape(-1)

    out = torch.zeros_like(q)
    all_idx = []
    weights = q.new_zeros(n, num_heads, height * width, height * width) if return_weights else None
    for b in range(n):
        q_mean = torch.stack([region(q, b, r).mean(0) for r in range(n_win * n_win)])
        k_mean = torch.stack([region(k, b, r).mean(0) for r in range(n_win * n_win)])
        affinity = (q_mean * scale) @ k_mean.t()
        idx = affinity.topk(topk, dim=-1).indices
        all_idx.append(idx)
        for r in range(n_win * n_win):
            keys = torch.cat([region(k, b, int(s)) for s in idx[r]])
            values = torch.cat([region(v, b, int(s)) for s in idx[r]])
            queries = region(q, b, r)
            heads = []
            for hd in range(num_heads):
                sl = slice(hd * d, (hd + 1) * d)
                logits = (queries[:, sl] * scale) @ keys[:, sl].t()
                prob = torch.exp(logits - logits.max(-1, keepdim=True).values)
                prob = prob / prob.sum(-1, keepdim=True)
                heads.append(prob @ values[:, sl])
                if weights is not None:
                    key_pixels = torch.cat([region_pixels(int(s)) for s in idx[r]])
                    weights[b, hd, region_pixels(r)[:, None], key_pixels[None]] = prob
            j, i = divmod(r, n_win)
            out[b, j * rh:(j + 1) * rh, i * rw:(i + 1) * rw] = \
                torch.cat(heads, -1).reshape(rh, rw, c)
    if return_weights:
        return out, torch.stack(all_idx), weights
    return out, torch.stack(all_idx)


def bra_reference(x, qkv_weight, qkv_bias, lepe_weight, lepe_bias, proj_weight, proj_bias, n_win,
                  topk, num_heads, auto_pad=True, return_weights=False):
    """Slow, obviously right :func:`bra` (same arguments; the default scale): explicit
    padding, the qkv projection, :func:`bi_level_routing_attention_reference`, LePE of the
    padded V map, the projection.

    Args:
        x (Tensor): (N, H, W, C) normalised tokens.
        qkv_weight (Tensor): fused projection weight, rows [q | k | v].
        qkv_bias (Tensor): its bias.
        lepe_weight (Tensor): depthwise LePE conv weight, applied to the padded V map.
        lepe_bias (Tensor): its bias.
        proj_weight (Tensor): output projection weight.
        proj_bias (Tensor): its bias.
        n_win (int): regions per side, as in :class:`BiLevelRoutingAttention`.
        topk (int): routed regions per query region.
        num_heads (int): attention heads.
        auto_pad (bool): pad the map to a multiple of ``n_win`` first.
        return_weights (bool): also return the attention weights as a dense
            (N, heads, Hp*Wp, Hp*Wp) matrix over the padded map (row-major pixels), zero outside
            each query's routed regions. For visualisation.

    Returns:
        tuple[Tensor, Tensor]: output (N, H, W, C) and routed indices (N, S*S, topk), plus the
        weights when ``return_weights``.
    """
    n, h_in, w_in, c = x.shape
    if auto_pad:
        pad_b, pad_r = (-h_in) % n_win, (-w_in) % n_win
        padded = x.new_zeros(n, h_in + pad_b, w_in + pad_r, c)
        padded[:, :h_in, :w_in] = x
        x = padded
    height, width = x.shape[1:3]
    if height % n_win or width % n_win:
        raise ValueError(f'{height}x{width} not divisible by n_win={n_win}')
    qkv = x @ qkv_weight.t() + qkv_bias
    q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
    out, idx, *weights = bi_level_routing_attention_reference(
        q, k, v, n_win, topk, num_heads, return_weights=return_weights)
    lepe = F.conv2d(v.permute(0, 3, 1, 2), lepe_weight, lepe_bias,
                    padding=lepe_weight.shape[-1] // 2, groups=c)
    out = out + lepe.permute(0, 2, 3, 1)
    out = (out @ proj_weight.t() + proj_bias)[:, :h_in, :w_in]
    return (out, idx, *weights)


def global_attention_lepe_reference(x, qkv_weight, lepe_weight, lepe_bias, proj_weight, proj_bias,
                                    num_heads=8):
    """Slow, obviously right :func:`global_attention_lepe` (same arguments), from the
    definition (official ``AttentionLePE``): MHSA (8 heads in every official model) with a
    bias-free qkv and scale ``(C / heads) ** -0.5``, one explicit softmax per head, plus the
    depthwise LePE (5x5) of the attention *input*, not of v, then ``proj``.

    Args:
        x (Tensor): (N, H, W, C) normalised tokens.
        qkv_weight (Tensor): fused projection weight (3C, C), rows [q | k | v].
        lepe_weight (Tensor): depthwise LePE weight (C, 1, k, k).
        lepe_bias (Tensor, optional): its bias.
        proj_weight (Tensor): output projection weight.
        proj_bias (Tensor, optional): its bias.
        num_heads (int): heads. Defaults to 8.

    Returns:
        Tensor: (N, H, W, C).
    """
    n, height, width, c = x.shape
    d = c // num_heads
    tokens = x.reshape(n, height * width, c)
    qkv = tokens @ qkv_weight.t()
    out = torch.zeros_like(tokens)
    for hd in range(num_heads):
        q = qkv[..., hd * d:(hd + 1) * d]
        k = qkv[..., c + hd * d:c + (hd + 1) * d]
        v = qkv[..., 2 * c + hd * d:2 * c + (hd + 1) * d]
        prob = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), dim=-1)
        out[..., hd * d:(hd + 1) * d] = prob @ v
    out = out.reshape(n, height, width, c)
    lepe = F.conv2d(x.permute(0, 3, 1, 2), lepe_weight, lepe_bias,
                    padding=lepe_weight.shape[-1] // 2, groups=c)
    out = out + lepe.permute(0, 2, 3, 1)
    return out @ proj_weight.t() + proj_bias


# ------------------------------------------------------------------ the declaration


def bi_level_routing_attention_macs(out, q, k, v, n_win, topk, num_heads, *args, **kwargs):
    """MACs of the definition on the whole (padded) map, as the official model computes it:
    the region affinity (S^2 x S^2 region means, C wide) plus QK^T and AV of every query
    region over its topk routed regions. The CPU path skips query regions that lie wholly in
    the padding; counted here as computed, so a count does not depend on the device."""
    n, height, width, channels = q.shape
    regions, tokens = n_win * n_win, (height // n_win) * (width // n_win)
    return n * regions * (regions * channels + 2 * tokens * topk * tokens * channels)


register_op('routing',
            references={bi_level_routing_attention: bi_level_routing_attention_reference,
                        bra: bra_reference,
                        global_attention_lepe: global_attention_lepe_reference},
            macs={bi_level_routing_attention: bi_level_routing_attention_macs},
            tools='mmattn.analysis.ops.routing')
