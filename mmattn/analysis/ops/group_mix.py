"""What the analysis tools read of group-mix attention (:mod:`mmattn.ops.group_mix`).

* :class:`GroupMixAttentionStraightforward`: the definition written plainly with the official
  structure, the anchor of the op benchmark;
* ``ATTENTION_PANELS``: what ``tools/analysis/vis_attention.py`` draws of a group-mix layer;
* :func:`bench_cases`: the cases of ``tools/analysis/benchmark.py --ops group_mix``.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmattn.ops.common import AttentionPanel
from mmattn.ops.group_mix import (AGG_KERNELS, CRPE_WINDOWS, HEADS_PER_SEGMENT, NUM_HEADS,
                                  NUM_SEGMENTS, GroupMixAttention,
                                  group_mix_attention_reference)


class GroupMixAttentionStraightforward(GroupMixAttention):
    """The definition written plainly, as the benchmark's anchor (not the fast path).

    The structure of the official model, re-written from the definition: separate q / k / v
    linears, the q/k/v images stacked on the batch axis (channel-major NCHW), one aggregator
    per segment applied to that stack, CoaT's factorized attention by ``einsum`` over the 8
    heads (softmax of k over the tokens, ``k~^T v``, then ``q`` times it), three CRPE convs on
    their head groups, the non-attention branch, then the output projection. Same arguments
    and the same numbers as :class:`GroupMixAttention` (a subclass for its arguments and
    layers, with its own forward); :meth:`from_module` copies a
    :class:`GroupMixAttention`'s weights (its ``qkv`` split into ``q``, ``k``, ``v``; every
    other parameter and buffer keeps its name).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # GroupMixAttention's arguments and layers
        qkv = self.qkv
        del self.qkv  # replaced by three projections
        self.head_dims = self.seg // HEADS_PER_SEGMENT
        self.q, self.k, self.v = (nn.Linear(self.in_channels, self.embed_dims,
                                            bias=qkv.bias is not None) for _ in range(3))

    @classmethod
    def from_module(cls, module: GroupMixAttention) -> 'GroupMixAttentionStraightforward':
        """A copy of ``module`` (weights, buffers, train/eval mode, dtype, device)."""
        new = cls(module.embed_dims, module.qkv.bias is not None, module.scale,
                  module.proj_drop.p, dict(type='BN'), module.in_channels)
        state = dict(module.state_dict())
        for name in ('weight', 'bias'):
            if f'qkv.{name}' in state:
                for key, part in zip('qkv', state.pop(f'qkv.{name}').chunk(3)):
                    state[f'{key}.{name}'] = part
        ref = module.qkv.weight
        new.to(ref.device, ref.dtype).load_state_dict(state)
        return new.train(module.training)

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        b, n, _ = x.shape
        h, w = hw
        c, seg, ch = self.embed_dims, self.seg, self.head_dims
        q, k, v = self.q(x), self.k(x), self.v(x)  # (B, N, C) each
        # q, k, v as images on the batch axis: (3B, C, H, W), q rows first
        stack = torch.cat([q, k, v]).transpose(1, 2).reshape(3 * b, c, h, w)
        segments = stack.split(seg, 1)
        agg = torch.cat([a(s) for a, s in zip(self.aggregators, segments)], 1)
        q, k, v = agg.reshape(3, b, NUM_HEADS, ch, n).transpose(-1, -2)  # (B, heads, N, Ch)

        k = k.softmax(dim=2)  # over the tokens
        context = torch.einsum('bhnk,bhnv->bhkv', k, v)
        factorized = torch.einsum('bhnk,bhkv->bhnv', q, context)

        v_img = v.transpose(-1, -2).reshape(b, NUM_HEADS * ch, h, w)
        groups = v_img.split([heads * ch for _, heads in CRPE_WINDOWS], 1)
        rel = torch.cat([conv(g) for conv, g in zip(self.crpe, groups)], 1)
        rel = rel.reshape(b, NUM_HEADS, ch, n).transpose(-1, -2)

        y = self.scale * factorized + q * rel
        y = y.transpose(1, 2).reshape(b, n, NUM_HEADS * ch)
        # s4 of q, k and v side by side on channels: (B, 3 * seg, H, W)
        local = segments[-1].reshape(3, b, seg, h, w).transpose(0, 1).reshape(b, 3 * seg, h, w)
        return self.proj_drop(self.proj(torch.cat([y, self.local_branch(local)], -1)))



# ------------------------------------------------------ attention panels and benchmark cases


def group_mix_panels(module, args, locate, captures):
    """The token-mixing weights of the query in each group proxy (aggregator identity, 3x3,
    5x5, 7x7), recomputed by :func:`group_mix_attention_reference` from the layer's state."""
    x, hw = args
    _, weights = group_mix_attention_reference(x, hw, *module.reference_args(training=False),
                                               return_weights=True)
    qy, qx = locate(hw)
    row = weights[0, :, qy * hw[1] + qx].view(-1, *hw)  # (heads, h, w)
    per_group = row.shape[0] // len(AGG_KERNELS)
    return [AttentionPanel(
        f'proxy{i}', f'GMA group proxy {i} (aggregator '
        f'{"identity" if k is None else f"{k}x{k}"}): token-mixing weights of the query',
        row[i * per_group:(i + 1) * per_group].mean(0)) for i, k in enumerate(AGG_KERNELS)]


ATTENTION_PANELS = {'GroupMixAttention': group_mix_panels}

# mmattn vs the straightforward anchor (same weights, :meth:`~GroupMixAttentionStraightforward.
# from_module`), and where listed the token-major reference and 'softmax SDPA (quadratic)': a
# *different*, quadratic op over the same tokens, to show what the factorized attention avoids
# (the same qkv and output projections around SDPA with the same 8 heads of C/10 channels over
# all H*W tokens, no aggregators, v's last fifth passed through; its max abs diff is not a
# correctness check). Forward runs eval mode (BatchNorm with running statistics), as inference
# does; forward+backward train mode (BatchNorm with the stacked q/k/v images' statistics).
# Sizes: GroupMixFormer-S maps (channels 80, 160, 320, 320 at strides 4, 8, 16, 32) of stages
# 0-3 at 224x224, of stages 0-2 at 512x512 (an ADE20K crop) and 800x1216 (a COCO image).
# 'projections only (floor)' runs just the qkv and output Linears of the same module (the input
# of ``proj`` is the q part of the qkv output): GEMMs that every implementation of the
# definition computes, so its time bounds from below what any of them can reach at that size
# (its max abs diff is not a correctness check either).
# 'definition kernels (floor)' runs every kernel of the definition once, each on its own
# input already in the layout it reads best, with no copy, permute or concatenation between
# them: the projections, each aggregator's separable conv, BatchNorm and Hardswish on the stacked
# q/k/v images, the three CRPE convs on their head groups, the softmax of k over the tokens and
# the two products of the factorized attention per head, the CRPE product and the sum, and the
# non-attention branch (:func:`_definition_kernels`): the anchor's own kernels without its data
# movement. Not a strict bound: in forward+backward its CRPE convs take oneDNN's backward, which
# mmattn replaces for 5x5 / 7x7 kernels (mmattn.ops.depthwise). No max abs diff: it returns the
# kernels' own outputs, not the op's.
# (label, B, C, H, W, impls besides mmattn, the anchor and the floors)
BENCH_SIZES = [
    ('224 stage 0 1x80x56x56', 1, 80, 56, 56, ()),
    ('224 stage 1 1x160x28x28', 1, 160, 28, 28, ()),
    ('224 stage 2 1x320x14x14', 1, 320, 14, 14, ('softmax SDPA (quadratic)', )),
    ('224 stage 3 1x320x7x7', 1, 320, 7, 7, ()),
    ('512 stage 0 1x80x128x128', 1, 80, 128, 128, ()),
    ('512 stage 1 1x160x64x64', 1, 160, 64, 64, ()),
    ('512 stage 2 1x320x32x32', 1, 320, 32, 32, ('softmax SDPA (quadratic)', )),
    ('800x1216 stage 0 1x80x200x304', 1, 80, 200, 304, ('reference', )),
    ('800x1216 stage 1 1x160x100x152', 1, 160, 100, 152, ()),
    ('800x1216 stage 2 1x320x50x76', 1, 320, 50, 76, ()),
]
BENCH_QUICK_SIZES = [('quick 2x20x12x9', 2, 20, 12, 9, ('reference', 'softmax SDPA (quadratic)'))]
BENCH_ANCHOR = 'straightforward'
BENCH_FLOOR = 'projections only (floor)'
BENCH_KERNELS = 'definition kernels (floor)'


def _softmax_sdpa(module, x):
    b, n, c = x.shape
    attn_dims = c - c // NUM_SEGMENTS  # 8 heads of C/10 channels; v's last fifth passes through
    qkv = module.qkv(x).view(b, n, 3, c)
    q, k, v = qkv[..., :attn_dims].reshape(b, n, 3, NUM_HEADS, -1).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, attn_dims)
    return module.proj(torch.cat([out, qkv[:, :, 2, attn_dims:]], -1))


def _definition_kernels(module, b, h, w, device):
    """(fn, leaves) of the 'definition kernels' floor: ``fn(*leaves)`` runs each kernel of
    ``module``'s definition once on its own leaf input, laid out as that kernel reads it
    (channels-last maps for the convs, token-major rows for the Linears and LayerNorm, each
    head's k as contiguous (Ch, N) rows for the softmax over tokens), and returns every output."""
    n, c, seg = h * w, module.embed_dims, module.seg
    ch = seg // HEADS_PER_SEGMENT
    gen = torch.Generator(device).manual_seed(1)

    def leaf(*shape, channels_last=False):
        t = torch.randn(*shape, generator=gen, device=device)
        if channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        return t.requires_grad_()

    leaves = [leaf(b, n, module.in_channels)]  # qkv input
    leaves += [leaf(3 * b, seg, h, w, channels_last=True) for _ in module.aggregators]
    leaves += [leaf(b, heads * ch, h, w, channels_last=True) for _, heads in CRPE_WINDOWS]
    leaves += [leaf(b * NUM_HEADS, ch, n), leaf(b * NUM_HEADS, n, ch),  # k rows, v
               leaf(b * NUM_HEADS, n, ch), leaf(b * NUM_HEADS, n, ch)]  # q, CRPE output
    leaves += [leaf(b, 3 * seg, h, w, channels_last=True), leaf(b, n, c)]  # local, proj input
    n_agg, n_crpe = len(module.aggregators), len(CRPE_WINDOWS)

    def run(x, *rest):
        module.train(torch.is_grad_enabled())  # as the mmattn row: BN statistics in training
        stacks, rest = rest[:n_agg], rest[n_agg:]
        groups, (k, v, q, rel, local, tokens) = rest[:n_crpe], rest[n_crpe:]
        outs = [module.qkv(x)]
        outs += [agg(stack) for agg, stack in zip(module.aggregators, stacks)]
        outs += [conv(group) for conv, group in zip(module.crpe, groups)]
        outs.append(torch.baddbmm(q * rel, q, k.softmax(-1) @ v, alpha=module.scale))
        outs += [module.local_branch(local), module.proj(tokens)]
        return tuple(outs)

    return run, leaves


def _bench_build(impl, size, device):
    _, b, c, h, w, _ = size

    def build():
        torch.manual_seed(0)
        module = GroupMixAttention(c).to(device)
        x = torch.randn(b, h * w, c, device=device, requires_grad=True)
        if impl == BENCH_ANCHOR:
            module = GroupMixAttentionStraightforward.from_module(module)
        if impl == 'reference':
            return (lambda t: group_mix_attention_reference(
                t, (h, w), *module.reference_args(training=torch.is_grad_enabled()))), [x]
        if impl == 'softmax SDPA (quadratic)':
            return (lambda t: _softmax_sdpa(module, t)), [x]
        if impl == BENCH_FLOOR:
            return (lambda t: module.proj(module.qkv(t).narrow(-1, 0, c))), [x]
        if impl == BENCH_KERNELS:
            return _definition_kernels(module, b, h, w, device)

        def run(t):  # eval for the forward (no grad), train for forward+backward
            return module.train(torch.is_grad_enabled())(t, (h, w))

        return run, [x]

    return build


def bench_cases(device='cpu', quick=False):
    """Group-mix attention's fast path against the straightforward anchor, the projections'
    floor and the definition kernels' floor (and the reference, the quadratic softmax SDPA
    where listed); see
    :func:`~mmattn.ops.common.check_bench_case`."""
    cases = []
    for size in BENCH_QUICK_SIZES if quick else BENCH_SIZES:
        for impl in ('mmattn', BENCH_ANCHOR, BENCH_FLOOR, BENCH_KERNELS) + size[5]:
            cases.append(dict(op='group-mix attention', impl=impl, size=size[0],
                              build=_bench_build(impl, size, device)))
    return cases
