"""Slide attention (Slide-Transformer, Pan et al., CVPR 2023), with its re-parameterisation.

Semantics are the released ``SlideAttention`` (LeapLabTHU/Slide-Transformer,
``slide_transformer/models/slide_swin.py``): every query attends to the
``k*k`` taps of its neighbourhood; the keys and values of tap ``i`` come from one depthwise
convolution of k (and v) with a fixed one-hot "shift" kernel plus a learnable "deformed
shifting" kernel, both shared by K, V and every head; borders are zero padded and *not*
masked; a per-(head, tap) bias is added to the keys (not to the logits); softmax over taps.

Fast path (:class:`~mmattn.ops.slide_function.SlideAttentionFunction`, in its own file): the
two kernels are summed before use (convolution is linear in its kernel, so this equals the
official sum of two convolution outputs up to rounding and gives both kernels the same
gradients), and the k*k-expanded keys and values (each k*k times the size of k and v) are
never built. Each tap is a weighted sum over the k*k *shifts* s of the
zero-padded map, ``K_i[c] = sum_s W[c, i, s] * k_s[c] + b[c, i]``, so with ``P_s = q * k_s``

    logits[i] = sum_s sum_c W[c, i, s] P_s[c] + sum_c b[c, i] q[c] + rpb[h, i] sum_c q[c]
    out[c]    = sum_s v_s[c] * (sum_i W[c, i, s] A[i]) + sum_i b[c, i] A[i]

one shift at a time: every shift is a strided view of the padded map, and the channel/tap
contractions are small matrix products (taps x head_dim) instead of depthwise convolutions. The
key-side bias enters as ``rpb[h, i] * sum_c q[c]`` (the official code adds it to the expanded
keys, so the logit bias depends on the query). Only q, the padded k and v, the
kernels and the (heads x k*k x H x W) attention weights are kept for backward, which runs the
same shift loop.

Order of this file: the functional op :func:`slide_attention` (and its expanded one-conv form,
used with attention dropout), the module :class:`SlideAttention`, the reference
:func:`slide_attention_reference` (the functional op's arguments), then the declaration
(:func:`~mmattn.ops.registry.register_op`: reference and MAC formula). The official
formulations the benchmark compares against, the benchmark cases and the attention pictures are
in :mod:`mmattn.analysis.ops.slide`.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmattn.ops.common import check_heads, check_qkv
from mmattn.ops.slide_function import SlideAttentionFunction
from mmattn.ops.registry import register_op
from mmattn.registry import register_model

LAYOUT = ('B', 'heads', 'head_dim', 'H', 'W')
_AUTOCAST_DEVICES = ('cpu', 'cuda', 'xpu', 'hpu', 'mps')


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, weight: Tensor, bias: Optional[Tensor],
                  rpb: Optional[Tensor]) -> int:
    """Validate shapes; returns the kernel size."""
    check_qkv(q, k, v, LAYOUT)
    heads, head_dim = q.shape[1], q.shape[2]
    ks = weight.shape[-1] if isinstance(weight, Tensor) and weight.dim() == 4 else 0
    want = (head_dim * ks * ks, 1, ks, ks)
    if ks < 1 or ks % 2 == 0 or tuple(weight.shape) != want:
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError('weight must be a depthwise kernel (head_dim*k*k, 1, k, k) with an odd '
                         f'kernel size k, head_dim={head_dim}, got {got}')
    if bias is not None and tuple(bias.shape) != (want[0], ):
        raise ValueError(f'bias must have shape ({want[0]},), got {tuple(bias.shape)}')
    if rpb is not None and tuple(rpb.shape) != (heads, ks * ks):
        raise ValueError(f'rpb must have shape (heads, k*k) = ({heads}, {ks * ks}), '
                         f'got {tuple(rpb.shape)}')
    return ks


def slide_attention(q: Tensor,
                    k: Tensor,
                    v: Tensor,
                    weight: Tensor,
                    bias: Optional[Tensor] = None,
                    rpb: Optional[Tensor] = None,
                    scale: Optional[float] = None,
                    dropout_p: float = 0.) -> Tensor:
    """Slide attention over the k x k neighbourhood of every pixel: scaled q, keys and values of
    the k*k taps from the (summed) depthwise shift convolutions of k and v, the key-side bias,
    softmax over the taps, zero padding without masking at the borders.

    Args:
        q (Tensor): queries (B, heads, head_dim, H, W), not yet scaled.
        k (Tensor): keys, same shape.
        v (Tensor): values, same shape.
        weight (Tensor): the shift kernel (head_dim*k*k, 1, k, k) shared by K, V and all heads:
            output channel ``c*k*k + i`` is tap ``i`` (row-major over the kernel cells) of
            channel ``c``. In training the sum of the one-hot and the learnable kernels.
        bias (Tensor, optional): (head_dim*k*k,), added at every position, borders included.
        rpb (Tensor, optional): key-side relative bias (heads, k*k), added to every channel of
            the expanded keys of each tap (so the logit bias is ``rpb[h, i] * sum_c q_c``).
        scale (float, optional): query scale; head_dim ** -0.5 if None.
        dropout_p (float): dropout on the attention probabilities (when > 0 the expanded
            one-conv form runs: the shift loop's backward does not replay a dropout mask).

    Returns:
        Tensor: (B, heads, head_dim, H, W).
    """
    _check_inputs(q, k, v, weight, bias, rpb)
    scale = q.shape[2]**-0.5 if scale is None else scale
    if dropout_p > 0:
        return slide_attention_expanded(q, k, v, weight, bias, rpb, scale, dropout_p)
    device = q.device.type
    # 'meta' (FLOP counting) and other device types have no autocast state to query
    if device in _AUTOCAST_DEVICES and torch.is_autocast_enabled(device):
        # Autocast does not reach inside an autograd.Function and would leave (bf16) q, k, v
        # against fp32 kernels; cast everything as autocast casts a conv's operands, run the
        # shift loop in that one dtype, and let the casts' own backward restore the dtypes.
        dtype = torch.get_autocast_dtype(device)
        q, k, v, weight, bias, rpb = (None if t is None else t.to(dtype)
                                      for t in (q, k, v, weight, bias, rpb))
        with torch.autocast(device, enabled=False):
            return SlideAttentionFunction.apply(q, k, v, weight, bias, rpb, scale)
    return SlideAttentionFunction.apply(q, k, v, weight, bias, rpb, scale)


def slide_attention_expanded(q, k, v, weight, bias=None, rpb=None, scale=None, dropout_p=0.):
    """:func:`slide_attention` (same arguments) in the expanded form: one grouped conv builds all
    k*k keys and values at once (k*k times the memory of k and v). Used with attention dropout,
    which the shift loop does not do; the benchmark's "expanded 1-conv"."""
    b, heads, head_dim, h, w = q.shape
    ks = weight.shape[-1]
    scale = head_dim**-0.5 if scale is None else scale
    taps = ks * ks
    q = q * scale
    kv = torch.cat([k, v]).reshape(2 * b * heads, head_dim, h, w)
    kv = F.conv2d(kv, weight, bias, padding=ks // 2, groups=head_dim)
    keys, values = kv.view(2, b, heads, head_dim, taps, h, w).unbind(0)
    logits = (q.unsqueeze(3) * keys).sum(2)  # (B, heads, taps, H, W)
    if rpb is not None:
        logits = logits + rpb.view(1, heads, taps, 1, 1) * q.sum(2, keepdim=True)
    attn = torch.softmax(logits, dim=2)
    if dropout_p > 0:
        attn = F.dropout(attn, dropout_p)
    return (attn.unsqueeze(2) * values).sum(3)


def one_hot_shift_kernel(head_dim: int, kernel_size: int) -> Tensor:
    """The fixed kernel (head_dim*k*k, 1, k, k): tap ``i`` is 1 at cell (i // k, i % k)."""
    taps = kernel_size * kernel_size
    return torch.eye(taps).view(1, taps, kernel_size, kernel_size).expand(
        head_dim, -1, -1, -1).reshape(head_dim * taps, 1, kernel_size, kernel_size).clone()


@register_model
class SlideAttention(nn.Module):
    """Multi-head slide attention: the released ``SlideAttention`` on channels-last maps.

    (B, H, W, C) -> (B, H, W, C) for any H, W. Parameter names are the official ones: ``qkv``
    (output channels laid out (head, q/k/v, head_dim), unlike Swin's (q/k/v, head, head_dim)),
    ``proj``, ``dep_conv`` (the one-hot shift kernel, a frozen Parameter, with a *trainable* bias),
    ``dep_conv1`` (the learnable deformed shifting, PyTorch's default Conv2d init) and
    ``relative_position_bias_table`` (1, heads, 1, k*k, 1, 1).

    :meth:`reparameterize` merges the two convolutions into ``dep_conv`` and removes
    ``dep_conv1`` (deploy layout: ``dep_conv.weight``/``dep_conv.bias`` hold the sums). A
    deployed module also loads a two-path state dict (it merges while loading).

    Args:
        embed_dims (int): channels C.
        num_heads (int): heads; must divide C.
        kernel_size (int): odd neighbourhood size k. Defaults to 3 (every released model).
        qkv_bias (bool): bias of ``qkv``. Defaults to True.
        qk_scale (float, optional): overrides head_dim ** -0.5. Defaults to None.
        attn_drop (float): dropout on the attention probabilities. Defaults to 0.
        proj_drop (float): dropout after ``proj``. Defaults to 0.
        rel_pos_bias (bool): learn the key-side bias table. Defaults to True.
        deploy (bool): build the merged single-conv layout directly (to load a checkpoint
            written after :meth:`reparameterize`). Defaults to False.
    """

    def __init__(self, embed_dims: int, num_heads: int, kernel_size: int = 3,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, attn_drop: float = 0.,
                 proj_drop: float = 0., rel_pos_bias: bool = True, deploy: bool = False):
        super().__init__()
        check_heads(embed_dims, num_heads)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) \
                or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be an odd integer >= 1, got {kernel_size!r}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dim = embed_dims // num_heads
        self.kernel_size = kernel_size
        self.scale = qk_scale
        self.attn_drop = attn_drop
        self.deploy = deploy
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        taps = kernel_size * kernel_size
        self.dep_conv = self._shift_conv()
        self.dep_conv.weight.requires_grad = False  # only the weight is frozen; the bias trains
        self.dep_conv1 = None if deploy else self._shift_conv()
        if rel_pos_bias:
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros(1, num_heads, 1, taps, 1, 1))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=.02)
        else:
            self.register_parameter('relative_position_bias_table', None)
        self.reset_shift_kernel()

    def _shift_conv(self) -> nn.Conv2d:
        d, ks = self.head_dim, self.kernel_size
        return nn.Conv2d(d, d * ks * ks, ks, padding=ks // 2, groups=d, bias=True)

    @torch.no_grad()
    def reset_shift_kernel(self) -> None:
        """Write the one-hot kernel into ``dep_conv.weight`` (undoes any init routine)."""
        if not self.deploy:
            self.dep_conv.weight.copy_(one_hot_shift_kernel(self.head_dim, self.kernel_size))

    def shift_kernel_is_one_hot(self) -> bool:
        expected = one_hot_shift_kernel(self.head_dim, self.kernel_size)
        return torch.equal(self.dep_conv.weight.detach().cpu().to(expected.dtype), expected)

    def merged_kernel(self) -> tuple:
        """(weight, bias) of the single convolution equal to the two paths."""
        if self.deploy:
            return self.dep_conv.weight, self.dep_conv.bias
        return (self.dep_conv.weight + self.dep_conv1.weight,
                self.dep_conv.bias + self.dep_conv1.bias)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Merge ``dep_conv1`` into ``dep_conv`` (weights and biases added: the convolutions are
        linear in their kernels and share padding, stride and groups), in float64, and drop
        it."""
        if self.deploy:
            return
        conv, extra = self.dep_conv, self.dep_conv1
        for name in ('weight', 'bias'):
            ours, theirs = getattr(conv, name), getattr(extra, name)
            merged = ours.detach().double().cpu() + theirs.detach().double().cpu()
            ours.copy_(merged.to(ours.dtype))
        self.dep_conv1 = None
        self.deploy = True

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Both layouts load into a deployed module: a two-path checkpoint is merged here.
        extra = prefix + 'dep_conv1.'
        if self.deploy and extra + 'weight' in state_dict:
            for name in ('weight', 'bias'):
                key = prefix + 'dep_conv.' + name
                if key in state_dict and extra + name in state_dict:
                    state_dict[key] = (state_dict[key].double() +
                                       state_dict.pop(extra + name).double()).to(
                                           state_dict[key].dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        # head-major qkv (the official layout): channel j is head j // (3d), then q / k / v,
        # then the channel
        qkv = self.qkv(x).permute(0, 3, 1, 2).reshape(b, self.num_heads, 3, self.head_dim, h, w)
        q, k, v = qkv.unbind(2)
        weight, bias = self.merged_kernel()
        rpb = self.relative_position_bias_table
        out = slide_attention(
            q, k, v, weight, bias, None if rpb is None else rpb.view(self.num_heads, -1),
            self.scale, self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(out.reshape(b, c, h, w).permute(0, 2, 3, 1)))

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'kernel_size={self.kernel_size}, deploy={self.deploy}')


# ------------------------------------------------------------------------------ reference


def _shifted(x: Tensor, dy: int, dx: int) -> Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]``, zero where that falls outside the map."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
        x[..., max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out


def slide_attention_reference(q, k, v, weight, bias=None, rpb=None, scale=None,
                              return_weights=False):
    """Slow, obviously right :func:`slide_attention` (same arguments), for tests.

    Written from the definition with explicit shifts: tap ``i`` of channel ``c`` is
    ``sum_{u,v} weight[c*k*k + i, 0, u, v] * x[y + u - p, x + v - p] + bias[c*k*k + i]`` with
    zeros outside the map; the rpb is added to the expanded keys; softmax over the taps.

    Returns:
        Tensor | tuple[Tensor, Tensor]: the output (B, heads, head_dim, H, W); with
        ``return_weights=True`` also the attention weights (B, heads, k*k, H, W): for the query
        at pixel (y, x), entry ``i`` is the weight of tap ``i``, i.e. of the pixel
        ``(y + i // k - k // 2, x + i % k - k // 2)`` (outside the map for border taps).
    """
    ks = _check_inputs(q, k, v, weight, bias, rpb)
    b, heads, head_dim, h, w = q.shape
    taps, pad = ks * ks, ks // 2
    kernel = weight.view(head_dim, taps, ks, ks)
    offset = q.new_zeros(head_dim, taps) if bias is None else bias.view(head_dim, taps)

    def expand(x: Tensor) -> Tensor:  # (B, heads, d, H, W) -> (B, heads, d, taps, H, W)
        out = x.new_zeros(b, heads, head_dim, taps, h, w)
        for i in range(taps):
            for u in range(ks):
                for t in range(ks):
                    out[:, :, :, i] += kernel[:, i, u, t].view(head_dim, 1, 1) * \
                        _shifted(x, u - pad, t - pad)
            out[:, :, :, i] += offset[:, i].view(head_dim, 1, 1)
        return out

    keys, values = expand(k), expand(v)
    if rpb is not None:
        keys = keys + rpb.view(1, heads, 1, taps, 1, 1)
    q = q * (head_dim**-0.5 if scale is None else scale)
    attn = torch.softmax((q.unsqueeze(3) * keys).sum(2), dim=2)
    out = (attn.unsqueeze(2) * values).sum(3)
    return (out, attn) if return_weights else out


# ------------------------------------------------------------------ the declaration


def slide_attention_macs(out, q, k, v, weight, *args, **kwargs):
    """MACs of the definition (the released SlideAttention): K and V of the k*k taps come from
    a depthwise conv with k*k output channels per channel and a k x k kernel (k^4 MACs per
    channel and pixel each), then q.K and A.V cost k^2 per channel and pixel each. The shift
    loop does the same work as slices and small GEMMs, which a dispatch counter would miss."""
    b, heads, dim, h, w = q.shape
    taps = weight.shape[-1] * weight.shape[-2]
    return 2 * b * heads * dim * h * w * taps * (taps + 1)


register_op('slide', references={slide_attention: slide_attention_reference},
            macs={slide_attention: slide_attention_macs}, tools='mmattn.analysis.ops.slide')
