"""Slide attention (Slide-Transformer, Pan et al., CVPR 2023), with its re-parameterisation.

Semantics are the released ``SlideAttention`` (specs/slide.md §1): every query attends to the
``k*k`` taps of its neighbourhood; the keys and values of tap ``i`` come from one depthwise
convolution of k (and v) with a fixed one-hot "shift" kernel plus a learnable "deformed
shifting" kernel, both shared by K, V and every head; borders are zero padded and *not*
masked; a per-(head, tap) bias is added to the keys (not to the logits); softmax over taps.

Fast path: the two kernels are summed before one grouped convolution (convolution is linear in
its kernel, so this equals the official sum of two convolution outputs up to rounding and gives
both kernels the same gradients), K and V go through that convolution as one batch, and the
key-side bias is folded into the logits as ``rpb[h, i] * sum_c q[c]`` (§1.5) instead of being
added to the 9x-sized expanded keys.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmattn.registry import register_model


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, weight: Tensor, bias: Optional[Tensor],
                  rpb: Optional[Tensor]) -> int:
    """Validate shapes; returns the kernel size."""
    for name, t in (('q', q), ('k', k), ('v', v)):
        if not isinstance(t, Tensor) or t.dim() != 5:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f'{name} must be a 5-D tensor (B, heads, head_dim, H, W), got {got}')
    if not q.shape == k.shape == v.shape:
        raise ValueError(f'q, k, v must have the same shape, got {tuple(q.shape)}, '
                         f'{tuple(k.shape)}, {tuple(v.shape)}')
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
    """Slide attention over the k x k neighbourhood of every pixel (spec §1.2-§1.7).

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
        dropout_p (float): dropout on the attention probabilities.

    Returns:
        Tensor: (B, heads, head_dim, H, W).
    """
    ks = _check_inputs(q, k, v, weight, bias, rpb)
    b, heads, head_dim, h, w = q.shape
    taps = ks * ks
    q = q * (head_dim**-0.5 if scale is None else scale)
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


def _shifted(x: Tensor, dy: int, dx: int) -> Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]``, zero where that falls outside the map."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
        x[..., max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out


def slide_attention_reference(q: Tensor,
                              k: Tensor,
                              v: Tensor,
                              weight: Tensor,
                              bias: Optional[Tensor] = None,
                              rpb: Optional[Tensor] = None,
                              scale: Optional[float] = None,
                              return_weights: bool = False):
    """Slow, obviously right :func:`slide_attention` (same arguments), for tests.

    Written from spec §1.3-§1.6 with explicit shifts: tap ``i`` of channel ``c`` is
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


def one_hot_shift_kernel(head_dim: int, kernel_size: int) -> Tensor:
    """The fixed kernel (head_dim*k*k, 1, k, k): tap ``i`` is 1 at cell (i // k, i % k)."""
    taps = kernel_size * kernel_size
    return torch.eye(taps).view(1, taps, kernel_size, kernel_size).expand(
        head_dim, -1, -1, -1).reshape(head_dim * taps, 1, kernel_size, kernel_size).clone()


@register_model
class SlideAttention(nn.Module):
    """Multi-head slide attention: the released ``SlideAttention`` on channels-last maps.

    (B, H, W, C) -> (B, H, W, C) for any H, W. Parameter names are the official ones: ``qkv``
    (output channels laid out (head, q/k/v, head_dim), spec §1.1, unlike Swin's), ``proj``,
    ``dep_conv`` (the one-hot shift kernel, a frozen Parameter, with a *trainable* bias),
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

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 kernel_size: int = 3,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 rel_pos_bias: bool = True,
                 deploy: bool = False):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                             f'({num_heads})')
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
        """Merge ``dep_conv1`` into ``dep_conv`` (spec §5), in float64, and drop it."""
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
        # head-major qkv: channel j is head j // (3d), then q / k / v, then the channel (§1.1)
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
