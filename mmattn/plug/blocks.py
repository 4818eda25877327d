"""Every mmattn attention as a plug-in block for any host: NCHW in, NCHW out, same shape.

The contract is mmcv's plug-in contract (``ContextBlock``, ``GeneralizedAttention``,
``NonLocal2d``): ``in_channels`` first, so ``mmdet``/``mmseg`` ``ResNet(plugins=[...])`` builds
a block from its config alone through ``mmcv.cnn.build_plugin_layer``; an ``_abbr_`` names the
layer inside the host (``layer2.0.bra_after_conv2``). Each block wraps the very layer the family
backbone uses (same class, same parameter names, same numerics), on channels-last maps:

* :class:`BiLevelRoutingAttention2d` - BiFormer's BRA (``n_win`` regions per side, ``topk``);
* :class:`NeighborhoodAttention2d` - NAT/DiNAT's neighborhood attention (``kernel_size``,
  ``dilation``);
* :class:`SlideAttention2d` - Slide-Transformer's slide attention (``kernel_size``);
* :class:`GroupMixAttention2d` - GroupMixFormer's group-mix attention (8 heads fixed);
* :class:`DualAttention2d` - Dual-ViT's semantic-token init + dual-path attention.

Options common to all: ``num_heads`` (None: the largest divisor of C not above C // 32, at
least 1: one head per 32 channels, the head width of the BiFormer, NAT, Slide-Swin and Dual-ViT
stages, whenever C // 32 divides C; see :func:`default_heads`), ``residual`` (return
``x + attn(x)``, as mmcv's blocks do) and ``zero_init`` (zero the output projection at init so
that a block inserted into a pretrained network starts as the identity; :meth:`init_weights`
re-applies it after the host's initialisers ran). Any H, W (each op pads and crops inside) and
any batch, an empty one included. The input must have the block's dtype (cast one to the
other), except under ``torch.autocast``.

Inside a transformer host (:class:`~mmattn.plug.AttentionSwap`) the same block is called on
tokens with the host's convention ``attn(x, hw_shape[, identity])``: (B, H*W, C) in and out.
"""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmattn.ops.dual import (DualPathAttention, SemanticTokenInit, dual_path_attention_reference,
                             semantic_init_reference)
from mmattn.ops.group_mix import CHANNEL_MULTIPLE as GROUP_MIX_CHANNELS
from mmattn.ops.group_mix import NUM_HEADS as GROUP_MIX_HEADS
from mmattn.ops.group_mix import GroupMixAttention, group_mix_attention_reference
from mmattn.ops.neighborhood import NeighborhoodAttention, neighborhood_attention_2d_reference
from mmattn.ops.routing import BiLevelRoutingAttention, bra_reference
from mmattn.ops.slide import SlideAttention, slide_attention_reference
from mmattn.registry import register_model

HEAD_DIM = 32  # default head width: BiFormer, NAT, Slide-Swin and Dual-ViT stages all use 32


def default_heads(in_channels: int, num_heads: Optional[int] = None, owner: str = 'block') -> int:
    """``num_heads``, checked to divide ``in_channels``; None: the largest divisor of
    ``in_channels`` not above ``max(1, in_channels // 32)``.

    That is one head per 32 channels whenever ``in_channels // 32`` divides ``in_channels``
    (32, 64, 96, 128, 256, ... channels); otherwise the next smaller divisor, so that any width
    builds: 100 channels -> 2 heads, 200 -> 5, 240 -> 6.
    """
    if num_heads is None:
        return next(h for h in range(max(1, in_channels // HEAD_DIM), 0, -1)
                    if in_channels % h == 0)
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1 \
            or in_channels % num_heads:
        divisors = [h for h in range(1, in_channels + 1) if in_channels % h == 0]
        raise ValueError(f'{owner}: num_heads must divide in_channels={in_channels} (one of '
                         f'{divisors}), got {num_heads!r}; None picks '
                         f'{default_heads(in_channels)}')
    return num_heads


class AttentionBlock2d(BaseModule):
    """Base of the plug-in blocks: checks, layouts, residual, zero-init.

    Subclasses build ``self.attn`` (the family's channels-last layer, output projection
    ``self.attn.proj``), implement :meth:`attend` on (B, H, W, C) maps and
    :meth:`attend_reference` (the same from the op's reference), set ``short_name``, the op's
    name in the analysis tools' ``HOST+OP`` specs (e.g. ``'R-50+bra'``), and ``fixed_heads``
    when the op's head count is part of its definition (:class:`AttentionSwap` then leaves
    ``num_heads`` unset instead of passing the host's).

    Args:
        in_channels (int): channels C of the host's feature map.
        residual (bool): return ``x + attn(x)``. Defaults to True.
        zero_init (bool): zero the output projection so the block starts as the identity
            (with ``residual``) or as zero (without). Defaults to True.
        init_cfg (dict | list[dict], optional): mmengine init config. Defaults to None.
    """
    short_name = None
    fixed_heads: Optional[int] = None  # the only num_heads the op takes (None: any divisor)

    def __init__(self, in_channels: int, residual: bool = True, zero_init: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'{type(self).__name__}: in_channels must be a positive int, got '
                             f'{in_channels!r}')
        self.in_channels = in_channels
        self.residual = residual
        self.zero_init = zero_init
        # a transformer host's stochastic depth on this branch (AttentionSwap sets it)
        self.drop_path = nn.Identity()

    def _heads(self, num_heads: Optional[int]) -> int:
        """``num_heads`` checked, or the default for ``in_channels`` (:func:`default_heads`)."""
        return default_heads(self.in_channels, num_heads, type(self).__name__)

    def attend(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C): the op alone, without the residual."""
        raise NotImplementedError

    def attend_reference(self, x: Tensor) -> Tensor:
        """:meth:`attend` computed by the op's reference (written from the definition; slow,
        eval mode), on this block's weights; the plug-in tests compare the two in float64."""
        raise NotImplementedError

    def reset_output(self) -> None:
        """Zero the output projection (weight and bias)."""
        nn.init.zeros_(self.attn.proj.weight)
        if self.attn.proj.bias is not None:
            nn.init.zeros_(self.attn.proj.bias)

    def init_weights(self) -> None:
        super().init_weights()
        # runs after the host's initialisers (mmengine initialises parents first), so the
        # zero output survives e.g. mmdet ResNet's Kaiming init_cfg
        if self.zero_init:
            self.reset_output()

    def _check(self, x: Tensor, channels_dim: int) -> None:
        if x.shape[channels_dim] != self.in_channels:
            raise ValueError(f'{type(self).__name__} was built for {self.in_channels} channels, '
                             f'got an input of shape {tuple(x.shape)}')
        dtype = self.attn.proj.weight.dtype
        # under autocast the ops cast their inputs themselves (a host's bf16/fp16 activations
        # into float32 weights is the normal mixed-precision case)
        if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
            hint = ('' if x.dtype.itemsize >= dtype.itemsize else
                    '; for mixed precision, call it under torch.autocast')
            raise TypeError(f'{type(self).__name__} has {dtype} weights, got a {x.dtype} input: '
                            f'cast the input (x.to({dtype})) or the block '
                            f'(block.to({x.dtype})){hint}')

    def forward(self, x: Tensor, hw_shape: Optional[Sequence[int]] = None,
                identity: Optional[Tensor] = None) -> Tensor:
        """NCHW ``(B, C, H, W)`` -> same shape; or, with ``hw_shape``, tokens ``(B, H*W, C)``
        (mmdet/mmseg transformer attentions: ``identity`` is added when given)."""
        if hw_shape is None:
            if x.dim() != 4:
                raise ValueError(f'{type(self).__name__} expects an NCHW map (B, C, H, W), got '
                                 f'shape {tuple(x.shape)}')
            self._check(x, 1)
            out = self.attend(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            out = self.drop_path(out)
            return x + out if self.residual else out
        height, width = hw_shape
        if x.dim() != 3 or x.shape[1] != height * width:
            raise ValueError(f'{type(self).__name__}: expected tokens (B, {height}*{width}, C), '
                             f'got shape {tuple(x.shape)}')
        self._check(x, 2)
        out = self.attend(x.unflatten(1, (height, width))).flatten(1, 2)
        out = self.drop_path(out)
        if self.residual:
            out = x + out
        return out if identity is None else identity + out

    def extra_repr(self) -> str:
        return f'in_channels={self.in_channels}, residual={self.residual}'


@register_model
class BiLevelRoutingAttention2d(AttentionBlock2d):
    """BiFormer's bi-level routing attention as a plug-in block (NCHW).

    The map is zero padded bottom/right to a multiple of ``n_win`` and cropped back, as the
    official det/seg BiFormer does; LePE is a 5x5 depthwise conv of V.

    Args:
        in_channels (int): channels C.
        num_heads (int, optional): heads, a divisor of C; None: the largest divisor of C
            not above C // 32 (at least 1), see :func:`default_heads`. Defaults to None.
        n_win (int): regions per side S. Defaults to 7 (the paper's ImageNet setting; the
            official detection backbone uses 16 on 800x1333 inputs).
        topk (int): routed regions per query region. Defaults to 4 (the paper's stage-2 value).
        lepe_kernel (int): LePE depthwise kernel. Defaults to 5.
        residual (bool): see :class:`AttentionBlock2d`.
        zero_init (bool): see :class:`AttentionBlock2d`.
        init_cfg (dict, optional): see :class:`AttentionBlock2d`.
    """
    short_name = 'bra'
    docs_page = 'plugin.md'
    _abbr_ = 'bra'

    def __init__(self, in_channels: int, num_heads: Optional[int] = None, n_win: int = 7,
                 topk: int = 4, lepe_kernel: int = 5, residual: bool = True,
                 zero_init: bool = True, init_cfg=None):
        super().__init__(in_channels, residual, zero_init, init_cfg)
        self.attn = BiLevelRoutingAttention(in_channels, self._heads(num_heads),
                                            n_win, topk, lepe_kernel, auto_pad=True)

    def attend(self, x: Tensor) -> Tensor:
        return self.attn(x)

    def attend_reference(self, x: Tensor) -> Tensor:
        a = self.attn
        return bra_reference(x, a.qkv.weight, a.qkv.bias, a.lepe.weight, a.lepe.bias,
                             a.proj.weight, a.proj.bias, a.n_win, a.topk, a.num_heads)[0]


@register_model
class NeighborhoodAttention2d(AttentionBlock2d):
    """NAT / DiNAT neighborhood attention as a plug-in block (NCHW).

    Each query attends to its ``kernel_size`` x ``kernel_size`` neighbourhood (every
    ``dilation``-th pixel), with a learned relative positional bias. A map smaller than
    ``kernel_size * dilation`` is zero padded and cropped back, as NATTEN 0.14/0.15 did.

    Args:
        in_channels (int): channels C.
        num_heads (int, optional): heads, a divisor of C; None: the largest divisor of C
            not above C // 32 (at least 1), see :func:`default_heads`. Defaults to None.
        kernel_size (int): odd neighbourhood size. Defaults to 7 (every NAT/DiNAT stage).
        dilation (int): dilation. Defaults to 1 (NAT; DiNAT alternates 1 with larger values).
        residual (bool): see :class:`AttentionBlock2d`.
        zero_init (bool): see :class:`AttentionBlock2d`.
        init_cfg (dict, optional): see :class:`AttentionBlock2d`.
    """
    short_name = 'na'
    docs_page = 'plugin.md'
    _abbr_ = 'na'

    def __init__(self, in_channels: int, num_heads: Optional[int] = None, kernel_size: int = 7,
                 dilation: int = 1, residual: bool = True, zero_init: bool = True,
                 init_cfg=None):
        super().__init__(in_channels, residual, zero_init, init_cfg)
        self.attn = NeighborhoodAttention(in_channels, self._heads(num_heads),
                                          kernel_size, dilation)

    def attend(self, x: Tensor) -> Tensor:
        return self.attn.forward_any_size(x)

    def attend_reference(self, x: Tensor) -> Tensor:
        a = self.attn
        b, h, w, c = x.shape
        need = a.kernel_size * a.dilation  # NATTEN 0.14's zero padding of small maps
        xp = F.pad(x, (0, 0, 0, max(need - w, 0), 0, max(need - h, 0)))
        hp, wp = xp.shape[1:3]
        q, k, v = F.linear(xp, a.qkv.weight, a.qkv.bias).view(
            b, hp, wp, 3, a.num_heads, -1).unbind(3)
        out = neighborhood_attention_2d_reference(q, k, v, a.kernel_size, a.dilation, a.rpb)
        return F.linear(out.reshape(b, hp, wp, c), a.proj.weight, a.proj.bias)[:, :h, :w]


@register_model
class SlideAttention2d(AttentionBlock2d):
    """Slide attention (Slide-Transformer) as a plug-in block (NCHW).

    Local ``kernel_size`` x ``kernel_size`` attention whose keys and values are shifted by a
    fixed one-hot depthwise kernel plus a learned "deformed shifting" kernel; after training
    :meth:`reparameterize` merges the two (any H, W; zero padded borders).

    Args:
        in_channels (int): channels C.
        num_heads (int, optional): heads, a divisor of C; None: the largest divisor of C
            not above C // 32 (at least 1), see :func:`default_heads`. Defaults to None.
        kernel_size (int): odd window. Defaults to 3 (every released Slide model).
        residual (bool): see :class:`AttentionBlock2d`.
        zero_init (bool): see :class:`AttentionBlock2d`.
        init_cfg (dict, optional): see :class:`AttentionBlock2d`.
    """
    short_name = 'slide'
    docs_page = 'plugin.md'
    _abbr_ = 'slide_attn'

    def __init__(self, in_channels: int, num_heads: Optional[int] = None, kernel_size: int = 3,
                 residual: bool = True, zero_init: bool = True, init_cfg=None):
        super().__init__(in_channels, residual, zero_init, init_cfg)
        self.attn = SlideAttention(in_channels, self._heads(num_heads),
                                   kernel_size)

    def init_weights(self) -> None:
        super().init_weights()
        # the host's Conv2d initialisers (e.g. Kaiming) also hit the fixed one-hot kernel
        self.attn.reset_shift_kernel()

    def reparameterize(self) -> None:
        """Merge the deformed-shifting conv into the shift conv (deploy layout)."""
        self.attn.reparameterize()

    def attend(self, x: Tensor) -> Tensor:
        return self.attn(x)

    def attend_reference(self, x: Tensor) -> Tensor:
        a = self.attn
        b, h, w, c = x.shape
        qkv = F.linear(x, a.qkv.weight, a.qkv.bias).permute(0, 3, 1, 2)
        q, k, v = qkv.reshape(b, a.num_heads, 3, a.head_dim, h, w).unbind(2)
        weight, bias = a.merged_kernel()
        out = slide_attention_reference(q, k, v, weight, bias,
                                        a.relative_position_bias_table.view(a.num_heads, -1))
        return F.linear(out.reshape(b, c, h, w).permute(0, 2, 3, 1), a.proj.weight, a.proj.bias)


def group_mix_width(in_channels: int) -> int:
    """Group-mix attention needs a multiple of ``CHANNEL_MULTIPLE`` (10) channels:
    ``in_channels`` rounded up."""
    return GROUP_MIX_CHANNELS * math.ceil(in_channels / GROUP_MIX_CHANNELS)


@register_model
class GroupMixAttention2d(AttentionBlock2d):
    """GroupMixFormer's group-mix attention as a plug-in block (NCHW).

    Tokens, 3x3, 5x5 and 7x7 aggregates of them (shared by q/k/v, BatchNorm + Hardswish) and a
    non-attention branch, five channel segments; the first four feed 8 heads of factorised
    linear attention with a convolutional relative position term. Linear in the pixel count.

    The op needs a multiple of 10 channels; a host width that is not (ResNet's 64/128/256/512)
    is projected to ``embed_dims`` by the qkv projection and back by the output projection.
    Under a host with ``norm_eval=True`` (mmdet's R-50 configs) the aggregators' BatchNorms are
    frozen with the host's.

    Args:
        in_channels (int): channels C.
        num_heads (int, optional): must be None or 8 (the op's head groups are fixed).
        embed_dims (int, optional): attention width, a multiple of 10; None: ``in_channels``
            rounded up to one. Defaults to None.
        norm_cfg (dict): aggregator norm. Defaults to ``dict(type='BN')``.
        residual (bool): see :class:`AttentionBlock2d`.
        zero_init (bool): see :class:`AttentionBlock2d`.
        init_cfg (dict, optional): see :class:`AttentionBlock2d`.
    """
    short_name = 'gma'
    fixed_heads = GROUP_MIX_HEADS
    docs_page = 'plugin.md'
    _abbr_ = 'gma'

    def __init__(self, in_channels: int, num_heads: Optional[int] = None,
                 embed_dims: Optional[int] = None, norm_cfg: dict = dict(type='BN'),
                 residual: bool = True, zero_init: bool = True, init_cfg=None):
        super().__init__(in_channels, residual, zero_init, init_cfg)
        if num_heads not in (None, self.fixed_heads):
            raise ValueError(f'group-mix attention has {self.fixed_heads} heads by design (their '
                             f'relative-position kernels are 3/5/7 for 2/3/3 heads); got '
                             f'num_heads={num_heads}: leave it None')
        embed_dims = group_mix_width(in_channels) if embed_dims is None else embed_dims
        self.attn = GroupMixAttention(embed_dims, norm_cfg=norm_cfg, in_channels=in_channels)

    def attend(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        return self.attn(x.reshape(b, h * w, c), (h, w)).view(b, h, w, c)

    def attend_reference(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        return group_mix_attention_reference(x.reshape(b, h * w, c), (h, w),
                                             *self.attn.reference_args(training=False)).view(x.shape)


@register_model
class DualAttention2d(AttentionBlock2d):
    """Dual-ViT's dual-path attention as a plug-in block (NCHW).

    Semantic tokens are made from the map itself (means of 7x7 blocks, a partial last block
    included, mixed with learned queries: Dual-ViT's stage-1 init), refined by their own
    self-attention, cross attention to the pixels and an MLP; each pixel then attends to the
    semantic tokens only. Cost linear in pixels times semantic tokens (1/49 of the pixels).

    Args:
        in_channels (int): channels C.
        num_heads (int, optional): heads, a divisor of C; None: the largest divisor of C
            not above C // 32 (at least 1), see :func:`default_heads`. Defaults to None.
        residual (bool): see :class:`AttentionBlock2d`.
        zero_init (bool): see :class:`AttentionBlock2d`.
        init_cfg (dict, optional): see :class:`AttentionBlock2d`.
    """
    short_name = 'dual'
    docs_page = 'plugin.md'
    _abbr_ = 'dual_attn'

    def __init__(self, in_channels: int, num_heads: Optional[int] = None, residual: bool = True,
                 zero_init: bool = True, init_cfg=None):
        super().__init__(in_channels, residual, zero_init, init_cfg)
        self.semantic_init = SemanticTokenInit(in_channels, ceil_mode=True)
        self.attn = DualPathAttention(in_channels, self._heads(num_heads))

    def semantic_tokens(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, H, W, C) -> pixel tokens (B, H*W, C) and semantic tokens (B, M, C)."""
        b, h, w, c = x.shape
        tokens = x.reshape(b, h * w, c)
        return tokens, self.semantic_init(tokens, (h, w))

    def attend(self, x: Tensor) -> Tensor:
        tokens, semantics = self.semantic_tokens(x)
        out, _ = self.attn(tokens, semantics)
        return out.view(x.shape)

    def attend_reference(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        tokens = x.reshape(b, h * w, c)
        semantics = semantic_init_reference(tokens, (h, w), *self.semantic_init.op_args())
        return dual_path_attention_reference(tokens, semantics,
                                             *self.attn.op_args())[0].view(x.shape)


PLUG_BLOCKS = (BiLevelRoutingAttention2d, NeighborhoodAttention2d, SlideAttention2d,
               GroupMixAttention2d, DualAttention2d)
