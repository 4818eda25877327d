"""Group-mix attention (GroupMixFormer, Ge et al. 2023, arXiv 2311.15157).

q, k and v are split on channels into five segments: the token itself (s0), 3x3 / 5x5 / 7x7
separable-conv aggregates of it (s1-s3), and a non-attention branch (s4). The aggregators are
shared by q, k and v, which sit on the batch axis of one (3B, C, H, W) stack, so in training
every BatchNorm pools its statistics over q, k and v together. Segments s0-s3 feed 8
heads of CoaT's factorized attention ``q . (softmax_N(k)^T v)``: linear in tokens, no N x N map.
A convolutional relative position term ``q * dwconv(v)`` is added unscaled and the
non-attention branch is appended after the heads, before the output projection.

Fast path (:func:`group_mix_attention`, on tensors; :class:`GroupMixAttention` holds the
parameters and calls it): everything stays token-major, which is channels-last for
the convs (CPU depthwise convs, forward and backward, are several times faster channels-last
than NCHW). The qkv projection is one GEMM whose output one copy deals out into a dense
(3B, H, W, seg) block per aggregator segment (:class:`_SegmentedQKV`, with its own backward), so
no slice of a shared stack is taken (slice backwards zero-fill the whole stack) and the weight
is used as stored. Each segment (two heads) then runs
to its share of the output: the CRPE as one depthwise conv at its heads' kernel size (heads 4
and 5, 5x5 and 7x7, share one 7x7 conv, the 5x5 kernel zero-padded), and the factorized product
as one GEMM of q with the block-diagonal ``scale * softmax_N(k)^T v``.
The aggregators' norms are passed to the op as callables (the module's BatchNorm layers: their
running statistics are state, and a SyncBatchNorm under distributed training).
:func:`group_mix_attention_reference` (the op's arguments) follows the definition token-major,
one segment and one head at a time; then the declaration
(:func:`~mmattn.ops.registry.register_op`). The definition written plainly with the official
structure (the anchor of the op benchmark,
:class:`~mmattn.analysis.ops.group_mix.GroupMixAttentionStraightforward`), the benchmark cases
and the attention pictures are in :mod:`mmattn.analysis.ops.group_mix`.
"""
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mmattn.ops.depthwise import DepthwiseConv2d, depthwise_conv2d
from mmattn.ops.registry import register_op
from mmattn.registry import register_model

NUM_HEADS = 8  # fixed: the CRPE head groups below must add up to it
NUM_SEGMENTS = 5
HEADS_PER_SEGMENT = 2  # seg = C/5 = 2 heads of C/10 channels: every head inside one segment
AGG_KERNELS = (None, 3, 5, 7)  # segments s0..s3; None: identity (still BN + Hardswish)
# (kernel, heads) of the relative-position convs: heads 0-1 k3, 2-4 k5, 5-7 k7 -- NOT the
# aggregator grouping (heads 0-1 identity, 2-3 3x3, 4-5 5x5, 6-7 7x7)
CRPE_WINDOWS = ((3, 2), (5, 3), (7, 3))
LOCAL_NORM_EPS = 1e-5  # the non-attention branch's LayerNorm keeps torch's default eps
BN_EPS = 1e-5  # the aggregators' BatchNorm (torch's default), in the reference
# embed_dims must split into 5 segments of 2 heads each: a multiple of 10
CHANNEL_MULTIPLE = NUM_SEGMENTS * HEADS_PER_SEGMENT


def check_embed_dims(embed_dims: int) -> None:
    """C must split into 5 segments and 4C/5 into 8 heads, i.e. be a positive multiple of 10."""
    if isinstance(embed_dims, bool) or not isinstance(embed_dims, int) \
            or embed_dims < CHANNEL_MULTIPLE or embed_dims % CHANNEL_MULTIPLE:
        raise ValueError(f'group-mix attention needs embed_dims divisible by {CHANNEL_MULTIPLE} '
                         f'({NUM_SEGMENTS} segments, 4/5 of the channels over {NUM_HEADS} heads), '
                         f'got {embed_dims!r}')


def default_scale(embed_dims: int) -> float:
    # (C // 8)^-0.5 with the block's full width C, not the real head width C/10, as the
    # official code
    return (embed_dims // NUM_HEADS)**-0.5


def factorized_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """CoaT factorized attention on channel-major maps: ``(q . (softmax_N(k)^T v))^T``.

    The plain channel-major form (the fast path computes it token-major, segment by segment).

    Args:
        q (Tensor): (B, heads, Ch, N) queries, not normalised.
        k (Tensor): (B, heads, Ch, N) keys; their softmax runs over the N tokens.
        v (Tensor): (B, heads, Ch, N) values.

    Returns:
        Tensor: (B, heads, Ch, N), unscaled. Cost O(N * Ch^2) per head.
    """
    context = k.softmax(dim=-1) @ v.transpose(-1, -2)  # (B, h, Ch_k, Ch_v) = K~^T V
    return context.transpose(-1, -2) @ q  # (q @ context)^T without transposing q


class _SegmentedQKV(torch.autograd.Function):
    """The qkv projection, written into the layout the aggregators read.

    ``weight`` / ``bias`` are the qkv Linear's, rows ``[q | k | v]``, each ``[s0 | .. | s4]``
    (``seg`` rows per segment). Forward is one GEMM (one wide GEMM runs near the machine's GEMM
    rate; twelve ``seg``-wide ones do not), then one copy that deals its columns out into four
    dense (3, B*N, seg) blocks, i.e. channels-last (3B, seg, H, W) stacks with q rows, then k,
    then v, for s0..s3, and the (B*N, 3*seg) ``[q_s4 | k_s4 | v_s4]`` input of the local
    branch. Backward gathers the five gradients into one (B*N, 3*C) matrix and does the two
    GEMMs of a Linear, so the weight is never reordered or copied.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], seg: int):
        bn = x.shape[0]
        ctx.save_for_backward(x, weight)
        ctx.seg, ctx.has_bias = seg, bias is not None
        full = F.linear(x, weight, bias).view(bn, 3, NUM_SEGMENTS, seg)
        outs = [x.new_empty(3, bn, seg).copy_(full[:, :, i].transpose(0, 1))
                for i in range(NUM_SEGMENTS - 1)]
        return (*outs, full[:, :, -1].reshape(bn, 3 * seg))

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        x, weight = ctx.saved_tensors
        bn, seg = x.shape[0], ctx.seg
        g = x.new_empty(bn, weight.shape[0])  # (B*N, 3*C), columns as the weight's rows
        g_seg = g.view(bn, 3, NUM_SEGMENTS, seg)
        for i, grad in enumerate(grads):
            cols = g_seg[:, :, i]
            if grad is None:
                cols.zero_()
            elif i < NUM_SEGMENTS - 1:
                cols.copy_(grad.transpose(0, 1))
            else:
                cols.copy_(grad.view(bn, 3, seg))
        grad_x = g @ weight if ctx.needs_input_grad[0] else None
        grad_w = g.t() @ x if ctx.needs_input_grad[1] else None
        grad_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


def _crpe_per_segment(crpe_weights: Sequence[Tensor], crpe_biases: Sequence[Tensor],
                      seg: int) -> list:
    """(weight, bias) of each attention segment's CRPE: its two heads' rows of the CRPE
    convs, at their own kernel size; where the two heads have different kernels (heads 4
    and 5: 5x5 and 7x7), the smaller one zero-padded to the larger (the padded taps add
    exact zeros), so that every segment takes one depthwise conv."""
    ch = seg // HEADS_PER_SEGMENT
    rows = [(w, b, j) for w, b, (_, heads) in zip(crpe_weights, crpe_biases, CRPE_WINDOWS)
            for j in range(heads)]  # (weight, bias, head within it) of heads 0..7
    per_segment = []
    for i in range(NUM_HEADS // HEADS_PER_SEGMENT):
        heads = rows[i * HEADS_PER_SEGMENT:(i + 1) * HEADS_PER_SEGMENT]
        (first, first_bias, j0), (last, _, _) = heads[0], heads[-1]
        if first is last:  # one conv: a view of its rows
            span = slice(j0 * ch, (j0 + HEADS_PER_SEGMENT) * ch)
            per_segment.append((first[span], first_bias[span]))
            continue
        k = max(w.shape[-1] for w, _, _ in heads)
        per_segment.append((
            torch.cat([F.pad(w[j * ch:(j + 1) * ch], [(k - w.shape[-1]) // 2] * 4)
                       for w, _, j in heads]),
            torch.cat([b[j * ch:(j + 1) * ch] for _, b, j in heads])))
    return per_segment


def _separable_conv(x: Tensor, dw_weight: Tensor, pw_weight: Tensor) -> Tensor:
    """Depthwise k x k then pointwise 1x1, no biases (:class:`SeparableConv2d`, stride 1)."""
    return F.conv2d(depthwise_conv2d(x, dw_weight), pw_weight)


def group_mix_attention(x: Tensor,
                        hw: Tuple[int, int],
                        qkv_weight: Tensor,
                        qkv_bias: Optional[Tensor],
                        agg_weights: Sequence[Tuple[Tensor, Tensor]],
                        agg_norms: Sequence[Callable[[Tensor], Tensor]],
                        crpe_weights: Sequence[Tensor],
                        crpe_biases: Sequence[Tensor],
                        local_dw_weight: Tensor,
                        local_pw_weight: Tensor,
                        local_norm_weight: Tensor,
                        local_norm_bias: Tensor,
                        proj_weight: Tensor,
                        proj_bias: Optional[Tensor],
                        scale: Optional[float] = None) -> Tensor:
    """Group-mix attention on tokens: the qkv projection, the group proxies (segment
    aggregators) shared by q, k and v, 8 heads of factorized attention plus CRPE on s0..s3, the
    non-attention branch on s4, the output projection.

    Args:
        x (Tensor): tokens (B, N, C_in), N = H*W row-major.
        hw (tuple[int, int]): (H, W).
        qkv_weight (Tensor): (3C, C_in), rows ``[q | k | v]``, each ``[s0 | .. | s4]`` of
            ``seg = C/5`` rows; C is ``embed_dims``, a multiple of 10.
        qkv_bias (Tensor, optional): (3C,).
        agg_weights (Sequence[tuple[Tensor, Tensor]]): the separable convs of the aggregators
            of s1, s2, s3 (3x3, 5x5, 7x7): (depthwise (seg, 1, k, k), pointwise
            (seg, seg, 1, 1)) each, no biases; s0's aggregator has no conv.
        agg_norms (Sequence[Callable[[Tensor], Tensor]]): the normalisation of each aggregator
            s0..s3, applied to the (3B, seg, H, W) stack of the segment's q, k and v images
            (so BatchNorm statistics pool over q, k and v). The module passes its BatchNorm
            layers, whose running statistics are state (updated in training; a SyncBatchNorm
            under distributed training), not tensors of this function.
        crpe_weights (Sequence[Tensor]): the three depthwise CRPE kernels, for heads 0-1 (3x3),
            2-4 (5x5) and 5-7 (7x7): (heads * C/10, 1, k, k) each.
        crpe_biases (Sequence[Tensor]): their biases.
        local_dw_weight (Tensor): depthwise 3x3 kernel (3 seg, 1, 3, 3) of the non-attention
            branch, applied to ``[q_s4 | k_s4 | v_s4]``.
        local_pw_weight (Tensor): its pointwise kernel (seg, 3 seg, 1, 1).
        local_norm_weight (Tensor): weight of the branch's LayerNorm (eps 1e-5).
        local_norm_bias (Tensor): its bias.
        proj_weight (Tensor): output projection (C_in, C).
        proj_bias (Tensor, optional): its bias.
        scale (float, optional): factor of the factorized term (not of the CRPE term); None
            uses ``(C // 8) ** -0.5`` as the official code.

    Returns:
        Tensor: (B, N, C_in).
    """
    b, n, c = x.shape
    h, w = hw
    embed_dims = qkv_weight.shape[0] // 3
    if c != qkv_weight.shape[1] or n != h * w:
        raise ValueError(f'expected tokens (B, {h}*{w}, {qkv_weight.shape[1]}), got '
                         f'{tuple(x.shape)}')
    seg = embed_dims // NUM_SEGMENTS
    scale = default_scale(embed_dims) if scale is None else scale
    *stacks, local = _SegmentedQKV.apply(x.reshape(b * n, c), qkv_weight, qkv_bias, seg)

    crpe = _crpe_per_segment(crpe_weights, crpe_biases, seg)
    ch = seg // HEADS_PER_SEGMENT
    block_mask = torch.block_diag(*x.new_ones(HEADS_PER_SEGMENT, ch, ch)) * scale

    outs = []
    for i, (norm, stack) in enumerate(zip(agg_norms, stacks)):
        # (3B, seg, H, W) channels-last; one norm call over q, k and v together
        stack = stack.view(3 * b, h, w, seg).permute(0, 3, 1, 2)
        if torch.compiler.is_compiling():
            # inductor (torch 2.13) cannot lower a convolution of this channels-last view of
            # the custom qkv output when H, W are symbolic ("ValueRangeError: Invalid ranges
            # [0:-1]"); a dense copy compiles. Eager is unchanged.
            stack = stack.contiguous()
        if i:
            stack = _separable_conv(stack, *agg_weights[i - 1])
        agg_out = F.hardswish(norm(stack))
        q, k, v = agg_out.permute(0, 2, 3, 1).reshape(3, b, n, seg).unbind(0)
        rel = depthwise_conv2d(v.view(b, h, w, seg).permute(0, 3, 1, 2), *crpe[i])
        rel = rel.permute(0, 2, 3, 1).reshape(b, n, seg)
        # softmax over tokens on contiguous rows; K~^T V of both heads as one (seg, seg)
        # GEMM, masked to its two diagonal blocks (the cross-head products become exact
        # zeros), so q @ context is one GEMM per segment with the output token-major
        context = (k.transpose(1, 2).softmax(-1) @ v) * block_mask
        # scale only on the factorized term, not on the CRPE term: it sits in block_mask
        outs.append(torch.baddbmm(q * rel, q, context))

    local = local.view(b, h, w, 3 * seg).permute(0, 3, 1, 2)
    local = _separable_conv(local, local_dw_weight, local_pw_weight).flatten(2).transpose(1, 2)
    outs.append(F.hardswish(F.layer_norm(local, (seg, ), local_norm_weight, local_norm_bias,
                                         LOCAL_NORM_EPS)))
    return F.linear(torch.cat(outs, -1), proj_weight, proj_bias)


class SeparableConv2d(nn.Module):
    """Depthwise k x k (no bias) then pointwise 1x1 (no bias): official ``SeparableConv2d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.dw = DepthwiseConv2d(in_channels, kernel_size, bias=False) if stride == 1 else \
            nn.Conv2d(in_channels, in_channels, kernel_size, stride, kernel_size // 2,
                      groups=in_channels, bias=False)
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


class SegmentAggregator(nn.Module):
    """One of s0..s3: optional separable conv, then BatchNorm and Hardswish (NCHW)."""

    def __init__(self, channels: int, kernel_size: Optional[int], norm_cfg: dict):
        super().__init__()
        self.conv = SeparableConv2d(channels, channels, kernel_size) if kernel_size else None
        self.norm = build_norm_layer(norm_cfg, channels)[1]

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is not None:
            x = self.conv(x)
        return F.hardswish(self.norm(x))


class LocalBranch(nn.Module):
    """Non-attention segment s4: [q_s4 | k_s4 | v_s4] -> separable 3x3 -> LayerNorm -> Hardswish.

    (B, 3*seg, H, W) in, tokens (B, N, seg) out.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = SeparableConv2d(3 * channels, channels, 3)
        self.norm = nn.LayerNorm(channels, eps=LOCAL_NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return F.hardswish(self.norm(self.conv(x).flatten(2).transpose(1, 2)))


@register_model
class GroupMixAttention(nn.Module):
    """Group-mix attention on tokens: (B, N, C) and (H, W) -> (B, N, C); the parameters of
    :func:`group_mix_attention`, which it calls (then the output dropout).

    Args:
        embed_dims (int): channels C, a multiple of 10 (seg = C/5, 8 heads of C/10 channels).
        qkv_bias (bool): bias of the qkv projection. Defaults to True (every official model).
        qk_scale (float, optional): factor of the factorized term; None uses
            ``(C // 8) ** -0.5`` as the official code. Defaults to None.
        proj_drop (float): dropout after the output projection. Defaults to 0.
        norm_cfg (dict): norm of the four aggregators; the official code uses SyncBN, ``BN`` is
            the same computation on one process. Defaults to ``dict(type='BN')``.
        in_channels (int, optional): width of the input tokens and of the output when it is not
            ``embed_dims`` (``qkv`` maps it to 3 x embed_dims, ``proj`` back): how the plug-in
            block serves hosts whose widths are not multiples of 10. None: ``embed_dims`` (every
            official model). Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 proj_drop: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 in_channels: Optional[int] = None):
        super().__init__()
        check_embed_dims(embed_dims)
        self.embed_dims = embed_dims
        self.in_channels = embed_dims if in_channels is None else in_channels
        self.seg = embed_dims // NUM_SEGMENTS
        self.scale = default_scale(embed_dims) if qk_scale is None else qk_scale
        self.qkv = nn.Linear(self.in_channels, 3 * embed_dims, bias=qkv_bias)
        self.aggregators = nn.ModuleList(
            SegmentAggregator(self.seg, k, norm_cfg) for k in AGG_KERNELS)
        self.local_branch = LocalBranch(self.seg)
        head_dims = self.seg // HEADS_PER_SEGMENT
        self.crpe = nn.ModuleList(
            nn.Conv2d(heads * head_dims, heads * head_dims, k, padding=k // 2,
                      groups=heads * head_dims) for k, heads in CRPE_WINDOWS)
        self.proj = nn.Linear(embed_dims, self.in_channels)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        return self.proj_drop(group_mix_attention(x, hw, *self.op_args()))

    def op_args(self) -> tuple:
        """The arguments of :func:`group_mix_attention` after ``(x, hw)``, ``scale`` included:
        this module's parameters, and its aggregators' norm layers as ``agg_norms``."""
        branch = self.local_branch
        return (self.qkv.weight, self.qkv.bias,
                [(agg.conv.dw.weight, agg.conv.pw.weight) for agg in self.aggregators[1:]],
                [agg.norm for agg in self.aggregators], [conv.weight for conv in self.crpe],
                [conv.bias for conv in self.crpe], branch.conv.dw.weight, branch.conv.pw.weight,
                branch.norm.weight, branch.norm.bias, self.proj.weight, self.proj.bias,
                self.scale)

    def reference_args(self, training: Optional[bool] = None) -> tuple:
        """:meth:`op_args` with each aggregator's BatchNorm replaced by
        :func:`batch_norm_formula` of its tensors (no running-statistics update): the
        arguments of :func:`group_mix_attention_reference` after ``(x, hw)``.

        Args:
            training (bool, optional): batch statistics (True) or running ones (False).
                Defaults to the module's mode.
        """
        training = self.training if training is None else training
        args = list(self.op_args())
        args[3] = [batch_norm_formula(agg.norm.weight, agg.norm.bias, agg.norm.running_mean,
                                      agg.norm.running_var, training)
                   for agg in self.aggregators]
        return tuple(args)

    def extra_repr(self) -> str:
        return f'embed_dims={self.embed_dims}, num_heads={NUM_HEADS}, scale={self.scale:.4f}'


# ------------------------------------------------------------------------------ reference


def batch_norm_formula(weight: Tensor,
                       bias: Tensor,
                       running_mean: Tensor,
                       running_var: Tensor,
                       training: bool = False,
                       eps: float = BN_EPS) -> Callable[[Tensor], Tensor]:
    """BatchNorm2d from its formula, as a callable on (N, C, H, W) maps (an ``agg_norms``
    entry of :func:`group_mix_attention_reference`).

    Args:
        weight (Tensor): (C,) affine weight.
        bias (Tensor): (C,) affine bias.
        running_mean (Tensor): (C,) used when not ``training``.
        running_var (Tensor): (C,) used when not ``training``.
        training (bool): biased statistics over every image and pixel of the input instead of
            the running ones (which are never updated here). Defaults to False.
        eps (float): added to the variance. Defaults to 1e-5 (torch's default).

    Returns:
        Callable[[Tensor], Tensor]: the normalisation.
    """

    def norm(x: Tensor) -> Tensor:
        if training:
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
        else:
            mean, var = running_mean, running_var
        x = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + eps)
        return x * weight[:, None, None] + bias[:, None, None]

    return norm


def _hardswish(x: Tensor) -> Tensor:
    return x * (x + 3).clamp(0, 6) / 6


def _separable(x: Tensor, dw_weight: Tensor, pw_weight: Tensor) -> Tensor:
    x = F.conv2d(x, dw_weight, padding=dw_weight.shape[-1] // 2, groups=x.shape[1])
    return F.conv2d(x, pw_weight)


def group_mix_attention_reference(x: Tensor,
                                  hw: Tuple[int, int],
                                  qkv_weight: Tensor,
                                  qkv_bias: Optional[Tensor],
                                  agg_weights: Sequence[Tuple[Tensor, Tensor]],
                                  agg_norms: Sequence[Callable[[Tensor], Tensor]],
                                  crpe_weights: Sequence[Tensor],
                                  crpe_biases: Sequence[Tensor],
                                  local_dw_weight: Tensor,
                                  local_pw_weight: Tensor,
                                  local_norm_weight: Tensor,
                                  local_norm_bias: Tensor,
                                  proj_weight: Tensor,
                                  proj_bias: Optional[Tensor],
                                  scale: Optional[float] = None,
                                  return_weights: bool = False):
    """Slow, obviously right :func:`group_mix_attention` (same arguments), token-major, one
    segment / head at a time. Pass :func:`batch_norm_formula` norms as ``agg_norms`` for a
    BatchNorm from its formula (:meth:`GroupMixAttention.reference_args` does).

    Args:
        x (Tensor): tokens (B, N, C_in), N = H*W row-major.
        hw (tuple[int, int]): (H, W).
        qkv_weight (Tensor): (3C, C_in), rows ``[q | k | v]``.
        qkv_bias (Tensor, optional): (3C,).
        agg_weights (Sequence[tuple[Tensor, Tensor]]): (depthwise, pointwise) kernels of the
            s1..s3 aggregators.
        agg_norms (Sequence[Callable[[Tensor], Tensor]]): the s0..s3 aggregators' norms, on the
            (3B, seg, H, W) q/k/v stacks.
        crpe_weights (Sequence[Tensor]): CRPE kernels of heads 0-1, 2-4, 5-7.
        crpe_biases (Sequence[Tensor]): their biases.
        local_dw_weight (Tensor): the non-attention branch's depthwise kernel.
        local_pw_weight (Tensor): its pointwise kernel.
        local_norm_weight (Tensor): its LayerNorm weight.
        local_norm_bias (Tensor): its LayerNorm bias.
        proj_weight (Tensor): output projection.
        proj_bias (Tensor, optional): its bias.
        scale (float, optional): factor of the factorized term; None: ``(C // 8) ** -0.5``.
        return_weights (bool): also return the attention weights. Defaults to False.

    Returns:
        Tensor | tuple[Tensor, Tensor]: output (B, N, C_in); with ``return_weights`` also the
        effective token-mixing weights of the factorized term, (B, 8, N, N):
        ``weights[b, j, n, m] = scale * q_n . softmax_N(k)_m`` of head j, so that head j's
        factorized output is ``weights[b, j] @ v``. They are not a softmax over keys (rows
        need not sum to 1 and can be negative). O(N^2) memory: small maps only.
    """
    b, n = x.shape[:2]
    c = qkv_weight.shape[0] // 3  # embed_dims (the input may be wider or narrower)
    h, w = hw
    seg = c // NUM_SEGMENTS
    ch = seg // HEADS_PER_SEGMENT
    scale = default_scale(c) if scale is None else scale
    qkv = F.linear(x, qkv_weight, qkv_bias)
    q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]

    # s0..s3: the same aggregator on q, k and v; the BN statistics come from all three at once
    aggregated = []  # per segment: (3B, seg, H, W)
    for i, kernel in enumerate(AGG_KERNELS):
        images = torch.cat([t[..., i * seg:(i + 1) * seg] for t in (q, k, v)], 0)
        images = images.transpose(1, 2).reshape(3 * b, seg, h, w)
        if kernel is not None:
            images = _separable(images, *agg_weights[i - 1])
        aggregated.append(_hardswish(agg_norms[i](images)))
    tokens = torch.cat(aggregated, 1).flatten(2).transpose(1, 2)  # (3B, N, 4*seg)
    q_agg, k_agg, v_agg = tokens[:b], tokens[b:2 * b], tokens[2 * b:]

    # CRPE on the aggregated v: head j gets the conv of its (kernel, heads) window group
    crpe_of_head = [i for i, (_, heads) in enumerate(CRPE_WINDOWS) for _ in range(heads)]
    first_head = [sum(hd for _, hd in CRPE_WINDOWS[:i]) for i in range(len(CRPE_WINDOWS))]
    heads_out, weights = [], []
    for j in range(NUM_HEADS):
        cols = slice(j * ch, (j + 1) * ch)
        qj, kj, vj = q_agg[..., cols], k_agg[..., cols], v_agg[..., cols]  # (B, N, Ch)
        k_soft = torch.softmax(kj, dim=1)  # each channel: a distribution over the N tokens
        context = k_soft.transpose(1, 2) @ vj  # (B, Ch, Ch)
        factor = qj @ context
        conv = crpe_of_head[j]
        rows = slice((j - first_head[conv]) * ch, (j - first_head[conv] + 1) * ch)
        weight, bias = crpe_weights[conv][rows], crpe_biases[conv][rows]
        v_img = vj.transpose(1, 2).reshape(b, ch, h, w)
        rel = F.conv2d(v_img, weight, bias, padding=weight.shape[-1] // 2, groups=ch)
        heads_out.append(scale * factor + qj * rel.flatten(2).transpose(1, 2))
        if return_weights:
            weights.append(scale * qj @ k_soft.transpose(1, 2))

    # s4: [q_s4 | k_s4 | v_s4] on channels -> separable conv -> LN (torch's default eps 1e-5)
    # -> Hardswish
    local = torch.cat([t[..., 4 * seg:] for t in (q, k, v)], -1)
    local = _separable(local.transpose(1, 2).reshape(b, 3 * seg, h, w), local_dw_weight,
                       local_pw_weight).flatten(2).transpose(1, 2)
    local = _hardswish(F.layer_norm(local, (seg, ), local_norm_weight, local_norm_bias,
                                    LOCAL_NORM_EPS))
    out = F.linear(torch.cat(heads_out + [local], -1), proj_weight, proj_bias)
    if return_weights:
        return out, torch.stack(weights, 1)
    return out


# ------------------------------------------------------------------ the declaration

# No MAC formula: the convs, GEMMs and batched matmuls of the op are the definition's own (the
# factorized attention is linear in tokens); the dispatch counter of mmattn.analysis counts them.
register_op('group_mix', references={group_mix_attention: group_mix_attention_reference},
            tools='mmattn.analysis.ops.group_mix')
