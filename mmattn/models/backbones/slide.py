"""Slide-Transformer backbones (Pan et al., CVPR 2023): Slide-Swin and Slide-PVT.

Slide attention (mmattn.ops.slide) replaces the attention of the first ``num_slide_stages``
stages (2 in every paper model); the later stages keep their host's attention, built from
mmdet's own Swin / PVT blocks. Both backbones take any input of at least 32x32 and return
contiguous NCHW maps at strides 4, 8, 16, 32.
"""

import math

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmcv.cnn.bricks.transformer import FFN, AdaptivePadding, PatchEmbed, PatchMerging
from mmdet.models.backbones.pvt import AbsolutePositionEmbedding, PVTEncoderLayer
from mmdet.models.layers import PatchEmbed as PVTPatchEmbed
from mmdet.models.backbones.swin import ShiftWindowMSA, SwinBlock
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleList
from torch import nn

from mmattn.ops.slide import SlideAttention
from mmattn.ops.common import tokens_to_map
from mmattn.registry import register_model
from .base import DenseBackbone, Stage

PVT_NORM = dict(type='LN', eps=1e-6)  # mmdet's PVT norm_cfg
# Window attention in inference: windows of at least this many tokens run their queries in
# chunks of at most CHUNKED_LOGITS logits (64 MiB of float32)
CHUNKED_MIN_TOKENS = 1024
CHUNKED_LOGITS = 2**24



class ClampedShiftWindowMSA(ShiftWindowMSA):
    """mmdet's (shifted) window attention with the official Swin rule for small maps.

    Official Swin (``SwinTransformerBlock``, also mmpretrain's Swin) uses, when the map is no
    larger than the window (``min(H, W) <= window_size``), no shift and a window of
    ``min(H, W)``; mmdet's detection Swin keeps the shift and pads the map to the window
    instead. The rule is applied per forward, since detection inputs vary in size. A smaller
    window reads the centre of the relative-position table (the same learned bias for the same
    offset).

    Larger maps compute exactly what mmdet's ``ShiftWindowMSA.forward`` computes (bottom/right
    zero padding to whole windows, cyclic shift, the -100 mask between the shifted regions,
    mmdet's ``WindowMSA``), written with the window counts as ceil divisions and every view
    with explicit sizes: mmdet's ``view(-1, ...)`` and float window counts make torch.compile's
    symbolic-size reasoning over four stages of padded sizes run for many minutes.
    """

    def forward(self, query, hw_shape):
        if torch.compiler.is_exporting():
            return self._forward_exported(query, hw_shape)
        height, width = hw_shape
        b, _, c = query.shape
        window, shift = self.window_size, self.shift_size
        if min(height, width) <= window:  # the official rule
            # int(): with it inductor built the first Slide-Swin graph in 460 s; a run without
            # it had not finished after 16 minutes (one run each, 2 cores)
            window, shift = int(min(height, width)), 0
        rows, cols = (height + window - 1) // window, (width + window - 1) // window
        x = F.pad(query.view(b, height, width, c),
                  (0, 0, 0, cols * window - width, 0, rows * window - height))
        if shift:
            x = torch.roll(x, (-shift, -shift), dims=(1, 2))
        windows = x.view(b, rows, window, cols, window, c).transpose(2, 3).reshape(
            b * rows * cols, window * window, c)
        mask = _shift_mask(rows, cols, window, shift, x.device) if shift else None
        if window == self.window_size and not self._chunk_queries(windows):
            out = self.w_msa(windows, mask=mask)
        else:
            out = self._window_attention(windows, window, mask)
        out = out.view(b, rows, cols, window, window, c).transpose(2, 3).reshape(
            b, rows * window, cols * window, c)
        if shift:
            out = torch.roll(out, (shift, shift), dims=(1, 2))
        return self.drop(out[:, :height, :width].reshape(b, height * width, c))

    def _forward_exported(self, query, hw_shape):
        """:meth:`forward` without a Python branch on the map size, for ``torch.export``
        (ONNX) with dynamic H and W: an exported graph keeps only the branch taken at the
        traced size, so a model traced where a stage map is smaller than its window would
        compute the small-map rule at every size. Here the window is
        ``min(window_size, H, W)`` and the shift is ``shift_size`` or 0, both symbolic, and
        every step runs at every size: the cyclic shift is a gather (a roll by 0 is the
        identity), the region mask is always added (all zeros without a shift, since every
        window then lies in one region), the bias comes from the table's centre."""
        height, width = hw_shape
        b, _, c = query.shape
        side = torch.sym_min(height, width)
        window = torch.sym_min(side, self.window_size)
        shift = torch.sym_ite(side <= self.window_size, 0, self.shift_size)
        rows, cols = (height + window - 1) // window, (width + window - 1) // window
        x = F.pad(query.view(b, height, width, c),
                  (0, 0, 0, cols * window - width, 0, rows * window - height))
        x = _roll2d(x, shift)
        windows = x.view(b, rows, window, cols, window, c).transpose(2, 3).reshape(
            b * rows * cols, window * window, c)
        out = self._window_attention(windows, window, _shift_mask(rows, cols, window, shift,
                                                                   x.device))
        out = out.view(b, rows, cols, window, window, c).transpose(2, 3).reshape(
            b, rows * window, cols * window, c)
        out = _roll2d(out, -shift)
        return self.drop(out[:, :height, :width].reshape(b, height * width, c))

    @staticmethod
    def _chunk_queries(windows):
        """Inference on large windows (the released global setting at dense sizes: one window
        of 2304 tokens per head at 768x768) runs the queries in chunks, so that the
        (windows, heads, T, T) logits never exist at once; training keeps them (autograd saves
        the attention matrix, as the official code). Never while tracing: a chunk count is a
        size a trace would freeze."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling() \
                or torch.compiler.is_exporting():
            return False
        return windows.shape[1] >= CHUNKED_MIN_TOKENS and not torch.is_grad_enabled()

    def _window_attention(self, x, window, mask=None):
        """mmdet WindowMSA on ``window`` x ``window`` windows (``mask``: (windows of one image,
        T, T), as mmdet's), the queries in chunks of at most :data:`CHUNKED_LOGITS` logits
        when :meth:`_chunk_queries`."""
        msa = self.w_msa
        n, tokens, c = x.shape
        q, k, v = msa.qkv(x).reshape(n, tokens, 3, msa.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, kt = q * msa.scale, k.transpose(-2, -1)
        heads = msa.num_heads
        bias = _relative_bias(msa.relative_position_bias_table, self.window_size, window)
        if self._chunk_queries(x):
            step = max(1, CHUNKED_LOGITS // (n * heads * tokens))
            chunks = [slice(start, start + step) for start in range(0, tokens, step)]
        else:  # unsliced: a traced slice end would freeze the size in an export
            chunks = [slice(None)]
        out = []
        for rows in chunks:
            attn = q[:, :, rows] @ kt + bias[:, rows]
            if mask is not None:  # mmdet's order of additions: bias, then mask
                attn = attn.view(-1, mask.shape[0], heads, attn.shape[2], tokens) + \
                    mask[:, None, rows]
                attn = attn.view(n, heads, -1, tokens)
            out.append(msa.attn_drop(msa.softmax(attn)) @ v)
        out = out[0] if len(out) == 1 else torch.cat(out, dim=2)
        return msa.proj_drop(msa.proj(out.transpose(1, 2).reshape(n, tokens, c)))


def _roll2d(x, shift):
    """``torch.roll(x, (-shift, -shift), dims=(1, 2))`` as a gather, for a symbolic ``shift``
    with ``|shift|`` < the size (the index wraps by ``where``: an empty range, or a modulo by a
    symbolic size, does not export)."""
    for dim in (1, 2):
        size = x.shape[dim]
        index = torch.arange(size, device=x.device) + shift
        index = torch.where(index >= size, index - size, index)
        index = torch.where(index < 0, index + size, index)
        x = x.index_select(dim, index)
    return x


def _shift_mask(rows, cols, window, shift, device):
    """(windows, w*w, w*w) mask of shifted-window attention: -100 between tokens of different
    regions of the rolled map (Swin's 3 x 3 regions: before the last window, the last window
    without its last ``shift`` rows/columns, those rows/columns), 0 within a region."""
    def region(length):  # 0, 1, 2 along one axis of the padded map
        pos = torch.arange(length, device=device)
        return (pos >= length - window).long() + (pos >= length - shift).long()

    ids = (3 * region(rows * window)[:, None] + region(cols * window)[None, :]).float()
    ids = ids.view(rows, window, cols, window).transpose(1, 2).reshape(
        rows * cols, window * window)
    diff = ids[:, None, :] - ids[:, :, None]
    return diff.masked_fill(diff != 0, -100.).masked_fill(diff == 0, 0.)


class CeilPadding(AdaptivePadding):
    """mmcv's corner ``AdaptivePadding`` of a kernel == stride patch layer, as a ceil division:
    the same zero padding, written so that symbolic sizes under torch.compile stay short."""

    def forward(self, x):
        height, width = x.shape[-2:]
        step_h, step_w = self.stride
        return F.pad(x, (0, (width + step_w - 1) // step_w * step_w - width,
                         0, (height + step_h - 1) // step_h * step_h - height))


def _relative_bias(table, table_window, window):
    """(heads, w*w, w*w) bias of a ``window``-sized window from a ``table_window`` table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                        indexing='ij')).flatten(1)  # (2, w*w)
    rel = coords[:, :, None] - coords[:, None, :] + table_window - 1
    index = rel[0] * (2 * table_window - 1) + rel[1]
    return table[index.to(table.device)].permute(2, 0, 1)


class ClampedSwinBlock(SwinBlock):
    """mmdet's ``SwinBlock`` with :class:`ClampedShiftWindowMSA` (same parameters, same init)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # change the forward only: building a second attention would draw other random weights
        self.attn.__class__ = ClampedShiftWindowMSA


def _check_slide_stages(num_slide_stages, kernel_size):
    if isinstance(num_slide_stages, bool) or not isinstance(num_slide_stages, int) \
            or not 0 <= num_slide_stages <= 4:
        raise ValueError(f'num_slide_stages must be an integer in 0..4, got {num_slide_stages!r}')
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 \
            or kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be an odd integer >= 1, got {kernel_size!r}')


def _init_shift_kernels(model, pretrained):
    """One-hot shift kernels after any init routine (an mmengine init such as Kaiming on every
    Conv2d would destroy them): re-created, or checked after a load."""
    for name, m in model.named_modules():
        if isinstance(m, SlideAttention) and not m.deploy:
            if not pretrained:
                m.reset_shift_kernel()
            elif not m.shift_kernel_is_one_hot():
                raise ValueError(f'{name}.dep_conv.weight of the loaded checkpoint is not the '
                                 'one-hot shift kernel; a re-parameterised (deploy) checkpoint '
                                 'needs deploy=True')


def switch_to_deploy(model):
    """Merge the two shift convolutions of every slide attention into one: the authors' "sum
    outputs in train, sum kernels in inference" (Slide-Transformer issue #2; the released code
    has no merge routine). Exact up to rounding: convolution is linear in its kernel."""
    for m in model.modules():
        if isinstance(m, SlideAttention):
            m.reparameterize()
    model.deploy = True


class TokenSlideAttention(SlideAttention):
    """:class:`SlideAttention` on tokens (B, H*W, C) with the residual: mmcv's attention
    interface ``forward(x, hw_shape, identity)`` used by mmdet's PVT blocks."""

    def __init__(self, *args, drop_path=0., **kwargs):
        super().__init__(*args, **kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x, hw_shape, identity=None):
        b, n, c = x.shape
        out = super().forward(x.view(b, *hw_shape, c)).view(b, n, c)
        return (x if identity is None else identity) + self.drop_path(out)


class SlideBlock(BaseModule):
    """Swin v1's pre-norm block with slide attention (stages 1-2 of the released
    slide_swin.py): ``x + DropPath(attn(LN(x)))``, ``x + DropPath(MLP(LN(x)))``, tokens and
    ``hw_shape`` in, as mmdet's ``SwinBlock``; the MLP is mmcv's FFN (Linear, exact GELU,
    Linear)."""

    def __init__(self, embed_dims, num_heads, feedforward_channels, kernel_size=3, drop_rate=0.,
                 attn_drop_rate=0., drop_path_rate=0., deploy=False):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims)
        self.attn = TokenSlideAttention(
            embed_dims, num_heads, kernel_size, attn_drop=attn_drop_rate, proj_drop=drop_rate,
            deploy=deploy, drop_path=drop_path_rate)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.ffn = FFN(embed_dims, feedforward_channels, num_fcs=2, ffn_drop=drop_rate,
                       dropout_layer=dict(type='DropPath', drop_prob=drop_path_rate),
                       act_cfg=dict(type='GELU'), add_identity=True)

    def forward(self, x, hw_shape):
        x = self.attn(self.norm1(x), hw_shape, identity=x)
        return self.ffn(self.norm2(x), identity=x)


class SlideBackbone(DenseBackbone):
    """What Slide-Swin and Slide-PVT share: one-hot shift kernels after any init, and the
    re-parameterisation of their slide attentions."""

    def init_weights(self):
        super().init_weights()
        # a file read through a conversion that leaves the slide attention out (official PVT
        # v1) gives no shift kernels: they are re-created like in a random init
        _init_shift_kernels(self, self.pretrained_init_cfg() is not None
                            and not self.pretrained_load_options())

    def switch_to_deploy(self):
        switch_to_deploy(self)


@register_model
class SlideSwin(SlideBackbone):
    """Slide-Swin: slide attention in stages 1-2, Swin (shifted) window attention in 3-4.

    Stages 3-4: the paper's FLOPs fit Swin's shifted window 7 (4.57 GMACs for T at 224 with the
    merged conv, paper 4.6 G), while the released code (LeapLabTHU/Slide-Transformer,
    ``slide_transformer/models/slide_swin.py`` with ``WINDOW_SIZE: 56`` in its yaml files) runs
    global attention there: the Swin block clamps a window larger than the map to the map and
    drops the shift. ``attn_mode='window'`` (default, dense prediction and the paper's FLOPs):
    window 7, shifted on odd blocks, padded to window multiples as mmdet's Swin, and, as the
    official Swin, no shift and a window of the map side on maps no larger than the window.

    The released setting is written directly as ``window_size=56``: a window larger than its
    stage map at ``pretrain_img_size`` becomes that map at construction (14 and 7 at 224; the
    bias tables get (2W-1)^2 rows) and the stage does not shift, the released block's rule. At
    224 the output equals the released model's; at other sizes the map is cut into windows of
    that size (the tables are tied to it). ``attn_mode='global'`` is the older spelling of the
    same model (every stage's window is its map at ``pretrain_img_size``, no shift).

    Loading a global-mode checkpoint into window mode resizes the stage-3/4 bias tables bicubically
    (what the official ``load_pretrained`` does): **not** numerically equivalent, a warning says
    so. ``relative_position_index`` buffers are always the model's own.

    Names: ``patch_embed`` (mmcv PatchEmbed), ``stages.{i}.blocks.{j}`` with ``attn`` (slide:
    official ``SlideAttention`` names; window: mmdet's ``attn.w_msa``), ``ffn.layers``, and
    ``stages.{i}.downsample`` (mmcv PatchMerging, nn.Unfold channel order: the converter
    ``slide_swin`` permutes the official [x0, x1, x2, x3] order), output norms ``norm{i}``.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'`` (or ``t/s/b``), or a dict with
            ``embed_dims`` (4 widths, each twice the last; an int E means E, 2E, 4E, 8E),
            ``depths`` and ``num_heads`` (4 values each) and optionally ``mlp_ratios``
            (default 4 per stage). Default: 'tiny'.
        in_channels (int): input channels. Default: 3.
        pretrain_img_size (int): classification input size; its stage maps
            (``pretrain_img_size // 4 // 2**i``) bound the windows (see above). Default: 224.
        attn_mode (str): ``'window'`` or ``'global'`` (see above). Default: 'window'.
        window_size (int | Sequence[int]): window of the window-attention stages (3-4 with two
            slide stages), one value or one per stage; a window larger than its stage map at
            ``pretrain_img_size`` is clamped to it and not shifted (``56``: the released model).
            Ignored in global mode. Default: 7.
        kernel_size (int): odd slide-attention kernel k. Default: 3.
        num_slide_stages (int): stages (from the first) with slide attention. Default: 2.
        mlp_ratio (float, optional): one FFN width ratio for every stage instead of the
            arch's ``mlp_ratios``; None: the arch's. Default: None.
        drop_rate (float): dropout after projections and in the FFN. Default: 0.
        attn_drop_rate (float): attention-probability dropout. Default: 0.
        drop_path_rate (float): stochastic depth, linear from 0 over all blocks (T/S/B
            ImageNet: 0.2 / 0.3 / 0.5; the configs set their task's value). Default: 0.
        out_indices (Sequence[int]): stages returned. Default: (0, 1, 2, 3).
        out_norms (bool): pass each returned map through its LayerNorm ``norm{i}`` (the
            dense-prediction norms added to the classification model, as mmdet's Swin); False
            returns the raw stage maps and builds no ``norm{i}``. Default: True.
        frozen_stages (int): freeze the stem (0) and stages ``< frozen_stages`` with their
            output norms; -1 freezes nothing. Default: -1.
        norm_eval (bool): BatchNorm in eval mode (there is none; config parity). Default: False.
        with_cp (bool): activation checkpointing per block. Default: False.
        deploy (bool): build the re-parameterised slide convs (see :meth:`switch_to_deploy`).
            Default: False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)`` reads an
            official (``model``), converted, or det/seg (``backbone.``) file through the
            ``slide_swin`` converter with strict names. None: the official init (trunc-normal
            Linear std .02, PyTorch conv defaults, one-hot shift kernels). Default: None.
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(
            embed_dims=[96, 192, 384, 768], depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
            mlp_ratios=[4.] * 4)),
        **dict.fromkeys(['s', 'small'], dict(
            embed_dims=[96, 192, 384, 768], depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24],
            mlp_ratios=[4.] * 4)),
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=[128, 256, 512, 1024], depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
            mlp_ratios=[4.] * 4)),
    }
    docs_page = 'families/slide.md'
    family = 'slide_swin'
    headline_arch = 'tiny'
    test_arch = dict(arch=dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 2, 1],
                               num_heads=[1, 2, 2, 4], mlp_ratios=[4.] * 4))
    channels_last = True
    attn_modes = ('window', 'global')

    def __init__(self, arch='tiny', in_channels=3, pretrain_img_size=224, attn_mode='window',
                 window_size=7, kernel_size=3, num_slide_stages=2, mlp_ratio=None, drop_rate=0.,
                 attn_drop_rate=0., drop_path_rate=0., out_indices=(0, 1, 2, 3),
                 out_norms=True, frozen_stages=-1, norm_eval=False, with_cp=False,
                 deploy=False, init_cfg=None):
        super().__init__(arch, in_channels, out_indices, out_norms, frozen_stages, norm_eval,
                         with_cp, init_cfg)
        settings = self.arch_settings
        _check_slide_stages(num_slide_stages, kernel_size)
        if attn_mode not in self.attn_modes:
            raise ValueError(f'attn_mode must be one of {self.attn_modes}, got {attn_mode!r}')
        if attn_mode == 'global' and (not isinstance(pretrain_img_size, int)
                                      or pretrain_img_size < 32 or pretrain_img_size % 32):
            raise ValueError('global attn_mode needs pretrain_img_size to be a multiple of 32, '
                             f'got {pretrain_img_size!r}')
        if isinstance(pretrain_img_size, bool) or not isinstance(pretrain_img_size, int) \
                or pretrain_img_size < 32:
            raise ValueError(f'pretrain_img_size must be an integer >= 32, got '
                             f'{pretrain_img_size!r}')
        windows = [window_size] * self.num_stages if isinstance(window_size, int) \
            else list(window_size) if isinstance(window_size, (list, tuple)) else None
        if windows is None or len(windows) != self.num_stages or any(
                isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in windows):
            raise ValueError('window_size must be an integer >= 1 or one per stage '
                             f'({self.num_stages}), got {window_size!r}')
        if mlp_ratio is not None:
            settings['mlp_ratios'] = [mlp_ratio] * self.num_stages
        depths, heads = settings['depths'], settings['num_heads']
        self.attn_mode = attn_mode
        self.num_slide_stages = num_slide_stages
        self.deploy = deploy
        # Stage map sides at the classification size (56, 28, 14, 7 at 224).
        maps = [pretrain_img_size // 2**(i + 2) for i in range(self.num_stages)]
        if attn_mode == 'global':  # one window = the whole stage map at that size, no shift
            windows = maps
        # The Swin v1 block's rule at construction (kept by the released slide_swin.py): a
        # window not smaller than its stage map becomes the map, which also sizes the bias
        # table, and the stage does not shift. Applied here to windows strictly larger than
        # the map: a window equal to it (7 in stage 4 at 224) gives the same output at that
        # size (the per-forward clamp drops the shift) and keeps mmdet's shifted windows on
        # larger detection inputs, as before.
        self.window_sizes = [min(w, m) for w, m in zip(windows, maps)]
        self.window_shifts = [attn_mode == 'window' and w <= m for w, m in zip(windows, maps)]

        dpr = self.drop_path_rates(drop_path_rate, depths)
        self.patch_embed = PatchEmbed(in_channels, self.embed_dims[0], kernel_size=4, stride=4,
                                      norm_cfg=dict(type='LN'))
        self.stages = ModuleList()
        for i, dim in enumerate(self.embed_dims):
            blocks = []
            for j in range(depths[i]):
                common = dict(embed_dims=dim, num_heads=heads[i],
                              feedforward_channels=int(settings['mlp_ratios'][i] * dim),
                              drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                              drop_path_rate=dpr[i][j])
                if i < num_slide_stages:
                    blocks.append(SlideBlock(kernel_size=kernel_size, deploy=deploy, **common))
                else:
                    blocks.append(ClampedSwinBlock(window_size=self.window_sizes[i],
                                                   shift=self.window_shifts[i] and j % 2 == 1,
                                                   **common))
            downsample = PatchMerging(dim, 2 * dim, stride=2, norm_cfg=dict(type='LN'),
                                      bias=False) if i < self.num_stages - 1 else None
            self.stages.append(Stage(blocks=blocks, downsample=downsample))
        for layer in [self.patch_embed] + [stage.downsample for stage in self.stages]:
            if layer is not None:  # same padding, no parameters: change the forward only
                layer.adaptive_padding.__class__ = CeilPadding
        self.add_out_norms(lambda i: nn.LayerNorm(self.embed_dims[i]))
        self._register_load_state_dict_pre_hook(self._fit_window_tables)

    def _parse_arch(self, arch):
        settings = self.parse_arch(arch, ('embed_dims', 'depths', 'num_heads'),
                                   optional_keys=('mlp_ratios', ),
                                   defaults=dict(mlp_ratios=[4.] * self.num_stages))
        if isinstance(arch, str):
            return settings
        self.check_widths(settings, doubling=True)
        return settings

    def _fit_window_tables(self, state_dict, prefix, *args):
        """Window tables of another size are resized bicubically; index buffers are ours."""
        own = self.state_dict()
        for key in list(state_dict):
            if not key.startswith(prefix) or 'w_msa.' not in key:
                continue
            name = key[len(prefix):]
            if name.endswith('relative_position_index') and name in own:
                state_dict[key] = own[name]
            elif name.endswith('relative_position_bias_table') and name in own \
                    and state_dict[key].shape != own[name].shape:
                state_dict[key] = resize_bias_table(state_dict[key], own[name].shape[0])
                print_log(f'SlideSwin: resized {name} {tuple(state_dict[key].shape)} bicubically '
                          'from the checkpoint; outputs are not those of the checkpoint\'s model',
                          logger='current', level=30)

    def forward_stem(self, x):
        return self.patch_embed(x)  # mmcv pads H, W up to multiples of 4

    def forward_stage(self, i, state):
        x, hw_shape = state
        stage = self.stages[i]
        x = self.run_blocks(stage.blocks, x, hw_shape)
        feat = x.view(x.shape[0], *hw_shape, x.shape[-1])
        if stage.downsample is not None:
            x, hw_shape = stage.downsample(x, hw_shape)
        return feat, (x, hw_shape)

    def stem_and_stages(self):
        return self.patch_embed, self.stages


def resize_bias_table(table, rows):
    """((2W-1)^2, heads) -> (rows, heads), bicubic on the (2W-1) x (2W-1) grid (not exact)."""
    side, new_side = round(table.shape[0]**0.5), round(rows**0.5)
    grid = table.T.reshape(1, -1, side, side).float()
    grid = F.interpolate(grid, size=(new_side, new_side), mode='bicubic', align_corners=False)
    return grid.reshape(-1, rows).T.contiguous().to(table.dtype)


@register_model
class SlidePVT(SlideBackbone):
    """Slide-PVT (v1): PVT v1 (mmdet's parts) with slide attention in stages 1-2.

    Only numbers were published for Slide-PVT (the released code is Slide-Swin only); these
    details are **inferred**:

    * Slide attention replaces spatial-reduction attention (and its ``sr`` conv + norm) in the
      first ``num_slide_stages = 2`` stages; stages 3-4 keep SRA. This matches the published
      parameter deltas of the paper's table (PVT-T -1.0M, PVT-S -1.8M = the stage-1/2 ``sr``
      convs), which the Slide-PVT parameter-count tests check.
    * Everything else is PVT v1 as in mmdet's ``PyramidVisionTransformer`` (its
      ``PatchEmbed``, ``AbsolutePositionEmbedding`` and ``PVTEncoderLayer``, its parameter
      names ``layers.{i}.{0: patch embedding, 1: [position embedding, blocks...], 2: stage
      norm}``): absolute position embeddings (kept in every stage: removing them would not fit
      the deltas), FFNs, no stage norms.
    * Slide attention as in Slide-Swin: k = 3, full width (no dim reduction), head-major qkv,
      key-side bias; the head width is PVT's 64.

    The input is zero padded at the bottom/right to a multiple of 32 and the outputs are cropped
    to ``ceil(H / stride)``. ``init_cfg=dict(type='Pretrained', ...)`` loads strictly through
    mmattn's loader (one error listing the keys that do not fit); ``convert_weights=True`` reads
    an official PVT v1 file through mmdet's ``pvt_convert``, every key but the slide stages'
    attention must fit, and that attention keeps its random initialisation.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'medium'``, ``'large'`` (PVT v1 depths), or
            a dict with ``embed_dims``, ``depths``, ``num_heads`` and ``mlp_ratios`` (4 values
            each) and optionally ``sr_ratios`` (default 8, 4, 2, 1). Default: 'small'.
        in_channels (int): input channels. Default: 3.
        pretrain_img_size (int): size of the position embeddings. Default: 224.
        kernel_size (int): odd slide-attention kernel. Default: 3.
        num_slide_stages (int): stages (from the first) with slide attention. Default: 2.
        drop_rate (float): dropout after projections, in the FFNs and on the position
            embeddings. Default: 0.
        attn_drop_rate (float): attention-probability dropout. Default: 0.
        drop_path_rate (float): stochastic depth, linear from 0 over all blocks (PVT: 0.1; the
            configs set it). Default: 0.
        out_indices (Sequence[int]): stages returned. Default: (0, 1, 2, 3).
        out_norms (bool): accepted for parity with the other backbones: PVT v1 has no stage or
            output norms (mmdet's ``norm_after_stage=False``), so the maps are the raw stage
            maps either way (True keeps parameter-free ``norm{i}`` identities). Default: True.
        frozen_stages (int): freeze stages ``< frozen_stages`` (patch embedding, position
            embedding, blocks); -1 or 0 freezes nothing (PVT has no separate stem).
            Default: -1.
        norm_eval (bool): BatchNorm in eval mode (there is none; config parity). Default: False.
        with_cp (bool): activation checkpointing per block. Default: False.
        deploy (bool): build re-parameterised slide convs. Default: False.
        convert_weights (bool): mmdet's ``pvt_convert`` on a Pretrained file. Default: False.
        init_cfg (dict, optional): see above. None: the official PVT init (trunc-normal Linear
            std .02, fan-out normal convs, trunc-normal position embeddings). Default: None.
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(depths=[2, 2, 2, 2])),
        **dict.fromkeys(['s', 'small'], dict(depths=[3, 4, 6, 3])),
        **dict.fromkeys(['m', 'medium'], dict(depths=[3, 4, 18, 3])),
        **dict.fromkeys(['l', 'large'], dict(depths=[3, 8, 27, 3])),
    }
    for _arch in arch_zoo.values():  # PVT v1 widths, heads (width 64), ratios of every size
        _arch.update(embed_dims=[64, 128, 320, 512], num_heads=[1, 2, 5, 8],
                     mlp_ratios=[8, 8, 4, 4], sr_ratios=[8, 4, 2, 1])
    del _arch
    docs_page = 'families/slide.md'
    patch_sizes = [4, 2, 2, 2]
    headline_arch = 'small'
    test_arch = dict(arch='tiny')  # PVT v1 widths are fixed (64..512); the shallowest depths
    size_divisor = 32

    def __init__(self, arch='small', in_channels=3, pretrain_img_size=224, kernel_size=3,
                 num_slide_stages=2, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.,
                 out_indices=(0, 1, 2, 3), out_norms=True, frozen_stages=-1, norm_eval=False,
                 with_cp=False, deploy=False, convert_weights=False, init_cfg=None):
        super().__init__(arch, in_channels, out_indices, out_norms, frozen_stages, norm_eval,
                         with_cp, init_cfg)
        settings = self.arch_settings
        _check_slide_stages(num_slide_stages, kernel_size)
        self.deploy = deploy
        self.convert_weights = convert_weights
        self.num_slide_stages = num_slide_stages
        dpr = self.drop_path_rates(drop_path_rate, settings['depths'])
        self.layers = ModuleList()
        for i, dim in enumerate(self.embed_dims):
            patch = self.patch_sizes[i]
            patch_embed = PVTPatchEmbed(in_channels=self.embed_dims[i - 1] if i else in_channels,
                                        embed_dims=dim, kernel_size=patch, stride=patch,
                                        padding=0, bias=True, norm_cfg=PVT_NORM)
            pos_shape = pretrain_img_size // math.prod(self.patch_sizes[:i + 1])
            blocks = [AbsolutePositionEmbedding(pos_shape, dim, drop_rate)]
            for j in range(settings['depths'][i]):
                block = PVTEncoderLayer(
                    embed_dims=dim, num_heads=settings['num_heads'][i],
                    feedforward_channels=int(settings['mlp_ratios'][i] * dim),
                    drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=dpr[i][j],
                    qkv_bias=True, norm_cfg=PVT_NORM, sr_ratio=settings['sr_ratios'][i])
                if i < num_slide_stages:
                    block.attn = TokenSlideAttention(
                        dim, settings['num_heads'][i], kernel_size, attn_drop=attn_drop_rate,
                        proj_drop=drop_rate, deploy=deploy, drop_path=dpr[i][j])
                blocks.append(block)
            self.layers.append(ModuleList([patch_embed, ModuleList(blocks), nn.Identity()]))
        self.add_out_norms(lambda i: nn.Identity())

    def _parse_arch(self, arch):
        settings = self.parse_arch(arch, optional_keys=('sr_ratios', ),
                                   defaults=dict(sr_ratios=[8, 4, 2, 1]))
        if not isinstance(arch, str):
            self.check_widths(settings)
        return settings

    def pretrained_load_options(self):
        if not self.convert_weights:
            return {}
        # an official PVT v1 file: its SRA weights of the slide stages go
        from mmdet.models.backbones.pvt import pvt_convert
        slide_attn = (r'^layers\.[0-%d]\.1\.\d+\.attn\.' % (self.num_slide_stages - 1)
                      if self.num_slide_stages else None)
        return dict(ignore=slide_attn, convert=pvt_convert)

    def official_init(self):
        super().official_init()
        self.init_conv_fan_out()
        for m in self.modules():
            if isinstance(m, AbsolutePositionEmbedding):
                m.init_weights()

    def forward_stem(self, x):
        return x  # each stage starts with its own patch embedding

    def forward_stage(self, i, x):
        patch_embed, blocks, norm = self.layers[i]
        x, hw_shape = patch_embed(x)
        x = norm(self.run_blocks(blocks, x, hw_shape))
        x = tokens_to_map(x, hw_shape)
        return x, x

    def stem_and_stages(self):
        return None, self.layers
