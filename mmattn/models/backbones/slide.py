"""Slide-Transformer backbones (Pan et al., CVPR 2023): Slide-Swin and Slide-PVT.

Slide attention (mmattn.ops.slide) replaces the attention of the first ``num_slide_stages``
stages (2 in every paper model); the later stages keep their host's attention, built from
mmdet's own Swin / PVT blocks. Both backbones take any input of at least 32x32 and return
contiguous NCHW maps at strides 4, 8, 16, 32.
"""

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmcv.cnn.bricks.transformer import FFN, AdaptivePadding, PatchEmbed, PatchMerging
from mmdet.models.backbones.pvt import (AbsolutePositionEmbedding, PVTEncoderLayer,
                                        PyramidVisionTransformer)
from mmdet.models.backbones.swin import ShiftWindowMSA, SwinBlock
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleList
from torch import nn

from mmattn.ops.slide import SlideAttention
from mmattn.registry import register_model
from mmattn.converters import load_pretrained
from .base import DenseBackbone, parse_out_norms

OUTPUT_STRIDE = 32  # SlidePVT pads inside to a multiple of its last stride, then crops



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
        height, width = hw_shape
        b, _, c = query.shape
        window, shift = self.window_size, self.shift_size
        if min(height, width) <= window:  # the official rule
            window, shift = min(height, width), 0
        rows, cols = (height + window - 1) // window, (width + window - 1) // window
        x = F.pad(query.view(b, height, width, c),
                  (0, 0, 0, cols * window - width, 0, rows * window - height))
        if shift:
            x = torch.roll(x, (-shift, -shift), dims=(1, 2))
        windows = x.view(b, rows, window, cols, window, c).transpose(2, 3).reshape(
            b * rows * cols, window * window, c)
        if window == self.window_size:
            mask = _shift_mask(rows, cols, window, shift, x.device) if shift else None
            out = self.w_msa(windows, mask=mask)
        else:
            out = self._window_attention(windows, window)
        out = out.view(b, rows, cols, window, window, c).transpose(2, 3).reshape(
            b, rows * window, cols * window, c)
        if shift:
            out = torch.roll(out, (shift, shift), dims=(1, 2))
        return self.drop(out[:, :height, :width].reshape(b, height * width, c))

    def _window_attention(self, x, window):
        """mmdet WindowMSA on ``window`` x ``window`` windows (no mask)."""
        msa = self.w_msa
        n, tokens, c = x.shape
        q, k, v = msa.qkv(x).reshape(n, tokens, 3, msa.num_heads, -1).permute(2, 0, 3, 1, 4)
        attn = (q * msa.scale) @ k.transpose(-2, -1)
        attn = attn + _relative_bias(msa.relative_position_bias_table, self.window_size, window)
        attn = msa.attn_drop(msa.softmax(attn))
        return msa.proj_drop(msa.proj((attn @ v).transpose(1, 2).reshape(n, tokens, c)))


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


def _run_block(block, x, hw_shape, with_cp):
    if with_cp and x.requires_grad:
        return cp.checkpoint(block, x, hw_shape, use_reentrant=False)
    return block(x, hw_shape)


class SlideSwinStage(BaseModule):
    """Blocks at one resolution, then mmcv's PatchMerging (stages 0-2)."""

    def __init__(self, blocks, downsample=None, with_cp=False):
        super().__init__()
        self.blocks = ModuleList(blocks)
        self.downsample = downsample
        self.with_cp = with_cp

    def forward(self, x, hw_shape):
        """Returns (pre-merge tokens, their hw, next stage's tokens, their hw)."""
        for block in self.blocks:
            x = _run_block(block, x, hw_shape, self.with_cp)
        if self.downsample is None:
            return x, hw_shape, x, hw_shape
        down, down_hw = self.downsample(x, hw_shape)
        return x, hw_shape, down, down_hw


@register_model
class SlideSwin(DenseBackbone):
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
            ``embed_dims`` (int), ``depths`` and ``num_heads`` (4 ints each). Default: 'tiny'.
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
        mlp_ratio (float): FFN width ratio. Default: 4.
        drop_rate (float): dropout after projections and in the FFN. Default: 0.
        attn_drop_rate (float): attention-probability dropout. Default: 0.
        drop_path_rate (float): stochastic depth, linear over all blocks (T/S/B ImageNet: 0.2 /
            0.3 / 0.5). Default: 0.1.
        out_indices (Sequence[int]): stages returned. Default: (0, 1, 2, 3).
        out_norms (bool): pass each returned map through its LayerNorm ``norm{i}`` (the
            dense-prediction norms added to the classification model, as mmdet's Swin); False
            returns the raw stage maps and builds no ``norm{i}``. Default: True.
        frozen_stages (int): freeze the stem and stages < frozen_stages. Default: -1.
        norm_eval (bool): BatchNorm in eval mode (there is none; config parity). Default: False.
        with_cp (bool): activation checkpointing per block. Default: False.
        deploy (bool): build the re-parameterised slide convs (see :meth:`switch_to_deploy`).
            Default: False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)`` reads an
            official (``model``), converted, or det/seg (``backbone.``) file through the
            ``slide_swin`` converter with strict names. None: the official init (trunc-normal
            Linear std .02, PyTorch conv defaults, one-hot shift kernels).
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(embed_dims=96, depths=[2, 2, 6, 2],
                                            num_heads=[3, 6, 12, 24])),
        **dict.fromkeys(['s', 'small'], dict(embed_dims=96, depths=[2, 2, 18, 2],
                                             num_heads=[3, 6, 12, 24])),
        **dict.fromkeys(['b', 'base'], dict(embed_dims=128, depths=[2, 2, 18, 2],
                                            num_heads=[4, 8, 16, 32])),
    }
    family = 'slide_swin'
    headline_arch = 'tiny'
    test_arch = dict(arch=dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4]))
    attn_modes = ('window', 'global')

    def __init__(self, arch='tiny', in_channels=3, pretrain_img_size=224, attn_mode='window',
                 window_size=7, kernel_size=3, num_slide_stages=2, mlp_ratio=4., drop_rate=0.,
                 attn_drop_rate=0., drop_path_rate=0.1, out_indices=(0, 1, 2, 3),
                 out_norms=True, frozen_stages=-1, norm_eval=False, with_cp=False,
                 deploy=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        settings = self._parse_arch(arch)
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
        depths, heads = settings['depths'], settings['num_heads']
        self.embed_dims = [settings['embed_dims'] * 2**i for i in range(self.num_stages)]
        self.in_channels = in_channels
        self.attn_mode = attn_mode
        self.num_slide_stages = num_slide_stages
        self.out_indices = self.parse_out_indices(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
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

        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        self.patch_embed = PatchEmbed(in_channels, self.embed_dims[0], kernel_size=4, stride=4,
                                      norm_cfg=dict(type='LN'))
        self.stages = ModuleList()
        for i, dim in enumerate(self.embed_dims):
            blocks = []
            for j in range(depths[i]):
                common = dict(embed_dims=dim, num_heads=heads[i],
                              feedforward_channels=int(mlp_ratio * dim), drop_rate=drop_rate,
                              attn_drop_rate=attn_drop_rate,
                              drop_path_rate=dpr[sum(depths[:i]) + j])
                if i < num_slide_stages:
                    blocks.append(SlideBlock(kernel_size=kernel_size, deploy=deploy, **common))
                else:
                    blocks.append(ClampedSwinBlock(window_size=self.window_sizes[i],
                                                   shift=self.window_shifts[i] and j % 2 == 1,
                                                   **common))
            downsample = PatchMerging(dim, 2 * dim, stride=2, norm_cfg=dict(type='LN'),
                                      bias=False) if i < self.num_stages - 1 else None
            self.stages.append(SlideSwinStage(blocks, downsample, with_cp))
        for layer in [self.patch_embed] + [stage.downsample for stage in self.stages]:
            if layer is not None:  # same padding, no parameters: change the forward only
                layer.adaptive_padding.__class__ = CeilPadding
        self.add_out_norms(out_norms, lambda i: nn.LayerNorm(self.embed_dims[i]))
        self._register_load_state_dict_pre_hook(self._fit_window_tables)

    def _parse_arch(self, arch):
        settings = self.parse_arch(arch, ('embed_dims', 'depths', 'num_heads'),
                                   per_stage_keys=('depths', 'num_heads'))
        if isinstance(arch, str):
            return settings
        for i, heads in enumerate(settings['num_heads']):
            if (settings['embed_dims'] * 2**i) % heads:
                raise ValueError(f'stage {i}: width {settings["embed_dims"] * 2**i} is not '
                                 f'divisible by num_heads={heads}')
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

    def init_weights(self):
        pretrained = self.pretrained_init_cfg() is not None
        super().init_weights()
        _init_shift_kernels(self, pretrained)

    def switch_to_deploy(self):
        switch_to_deploy(self)

    def forward(self, x):
        self.check_input(x)
        x, hw_shape = self.patch_embed(x)  # mmcv pads H, W up to multiples of 4
        outs = []
        for i, stage in enumerate(self.stages):
            feat, feat_hw, x, hw_shape = stage(x, hw_shape)
            if i in self.out_indices:
                out = self.out_norm(i, feat)
                outs.append(out.view(-1, *feat_hw, out.shape[-1]).permute(0, 3, 1, 2)
                            .contiguous())
            if i == self.out_indices[-1]:
                break
        return tuple(outs)

    def stem_and_stages(self):
        return self.patch_embed, self.stages


def resize_bias_table(table, rows):
    """((2W-1)^2, heads) -> (rows, heads), bicubic on the (2W-1) x (2W-1) grid (not exact)."""
    side, new_side = round(table.shape[0]**0.5), round(rows**0.5)
    grid = table.T.reshape(1, -1, side, side).float()
    grid = F.interpolate(grid, size=(new_side, new_side), mode='bicubic', align_corners=False)
    return grid.reshape(-1, rows).T.contiguous().to(table.dtype)


@register_model
class SlidePVT(PyramidVisionTransformer):
    """Slide-PVT (v1): mmdet's PyramidVisionTransformer with slide attention in stages 1-2.

    Only numbers were published for Slide-PVT (the released code is Slide-Swin only); these
    details are **inferred**:

    * Slide attention replaces spatial-reduction attention (and its ``sr`` conv + norm) in the
      first ``num_slide_stages = 2`` stages; stages 3-4 keep SRA. This matches the published
      parameter deltas of the paper's table (PVT-T -1.0M, PVT-S -1.8M = the stage-1/2 ``sr``
      convs), which the Slide-PVT parameter-count tests check.
    * Everything else is PVT v1 as in mmdet: patch embeddings, absolute position embeddings
      (kept in every stage: removing them would not fit the deltas), FFNs, no stage norms.
    * Slide attention as in Slide-Swin: k = 3, full width (no dim reduction), head-major qkv,
      key-side bias; the head width is PVT's 64.

    The input is zero padded at the bottom/right to a multiple of 32 and the outputs are cropped
    to ``ceil(H / stride)``. ``init_cfg=dict(type='Pretrained', ...)`` loads strictly through
    mmattn's loader (one error listing the keys that do not fit); ``convert_weights=True`` reads
    an official PVT v1 file through mmdet's ``pvt_convert``, every key but the slide stages'
    attention must fit, and that attention keeps its random initialisation.

    Args:
        arch (str): ``'tiny'``, ``'small'``, ``'medium'``, ``'large'`` (PVT v1 depths).
            Default: 'small'.
        in_channels (int): input channels. Default: 3.
        pretrain_img_size (int): size of the position embeddings. Default: 224.
        kernel_size (int): odd slide-attention kernel. Default: 3.
        num_slide_stages (int): stages (from the first) with slide attention. Default: 2.
        out_indices (Sequence[int]): stages returned. Default: (0, 1, 2, 3).
        out_norms (bool): accepted for parity with the other backbones: PVT v1 has no stage or
            output norms (mmdet's ``norm_after_stage=False``), so the maps are the raw stage
            maps either way. Default: True.
        drop_rate, attn_drop_rate (float): dropouts. Default: 0.
        drop_path_rate (float): stochastic depth (PVT: 0.1). Default: 0.1.
        frozen_stages (int): freeze stages < frozen_stages (patch embedding, position
            embedding, blocks). Default: -1.
        norm_eval (bool): BatchNorm in eval mode (there is none; config parity). Default: False.
        with_cp (bool): activation checkpointing per block. Default: False.
        deploy (bool): build re-parameterised slide convs. Default: False.
        convert_weights (bool): mmdet's ``pvt_convert`` on a Pretrained file. Default: False.
        init_cfg (dict, optional): see above. Default: None.
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], [2, 2, 2, 2]),
        **dict.fromkeys(['s', 'small'], [3, 4, 6, 3]),
        **dict.fromkeys(['m', 'medium'], [3, 4, 18, 3]),
        **dict.fromkeys(['l', 'large'], [3, 8, 27, 3]),
    }
    num_heads = [1, 2, 5, 8]  # PVT v1, head width 64
    headline_arch = 'small'
    test_arch = dict(arch='tiny')  # PVT v1 widths are fixed (64..512); the shallowest depths
    parse_out_indices = DenseBackbone.parse_out_indices

    def __init__(self, arch='small', in_channels=3, pretrain_img_size=224, kernel_size=3,
                 num_slide_stages=2, out_indices=(0, 1, 2, 3), out_norms=True, drop_rate=0.,
                 attn_drop_rate=0., drop_path_rate=0.1, frozen_stages=-1, norm_eval=False,
                 with_cp=False, deploy=False, convert_weights=False, init_cfg=None):
        if not isinstance(arch, str) or arch.lower() not in self.arch_zoo:
            raise ValueError(f'Unknown SlidePVT arch {arch!r}; choose one of '
                             f'{sorted(self.arch_zoo)}')
        _check_slide_stages(num_slide_stages, kernel_size)
        self.num_stages = 4
        out_indices = self.parse_out_indices(out_indices)
        super().__init__(pretrain_img_size=pretrain_img_size, in_channels=in_channels,
                         num_layers=self.arch_zoo[arch.lower()], num_heads=self.num_heads,
                         out_indices=out_indices, drop_rate=drop_rate,
                         attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
                         convert_weights=convert_weights, init_cfg=init_cfg)
        if isinstance(self.init_cfg, dict):  # mmdet's init_weights reads init_cfg.checkpoint
            self.init_cfg = ConfigDict(self.init_cfg)
        self.in_channels = in_channels
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = deploy
        self.num_slide_stages = num_slide_stages
        self.out_norms = parse_out_norms(out_norms)
        self.embed_dims = [64 * h for h in self.num_heads]
        for _, blocks, _ in self.layers:
            for m in blocks:
                if isinstance(m, AbsolutePositionEmbedding):
                    # mmdet stores numpy ints here; torch.compile cannot trace slicing by them
                    m.pos_shape = tuple(int(s) for s in m.pos_shape)
        for i in range(num_slide_stages):
            for block in self.layers[i][1]:
                if isinstance(block, PVTEncoderLayer):
                    sra = block.attn
                    block.attn = TokenSlideAttention(
                        sra.embed_dims, sra.num_heads, kernel_size, attn_drop=attn_drop_rate,
                        proj_drop=drop_rate, deploy=deploy,
                        drop_path=getattr(sra.dropout_layer, 'drop_prob', 0.))

    def init_weights(self):
        init_cfg = self.init_cfg
        if not (isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained'):
            super().init_weights()  # mmdet's: normal-inits every conv, shift kernels included
            _init_shift_kernels(self, pretrained=False)
            return
        # mmdet's PVT loader is strict=False (any file "loads" with a warning): initialise
        # randomly, then load strictly through mmattn's loader
        self.init_cfg = None
        try:
            super().init_weights()
        finally:
            self.init_cfg = init_cfg
        _init_shift_kernels(self, pretrained=False)
        if self.convert_weights:  # official PVT v1: its SRA weights of the slide stages go
            from mmdet.models.backbones.pvt import pvt_convert
            slide_attn = (r'^layers\.[0-%d]\.1\.\d+\.attn\.' % (self.num_slide_stages - 1)
                          if self.num_slide_stages else None)
            load_pretrained(self, None, init_cfg['checkpoint'], prefix=init_cfg.get('prefix'),
                            ignore=slide_attn, convert=pvt_convert)
            _init_shift_kernels(self, pretrained=False)
        else:
            load_pretrained(self, None, init_cfg['checkpoint'], prefix=init_cfg.get('prefix'))
            _init_shift_kernels(self, pretrained=True)

    def switch_to_deploy(self):
        switch_to_deploy(self)

    # an mmdet PVT, not a DenseBackbone: borrow the shared input checks
    min_input_size = DenseBackbone.min_input_size
    check_input = DenseBackbone.check_input

    def train(self, mode=True):
        super().train(mode)
        for layer in self.layers[:max(self.frozen_stages, 0)]:
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False
        return self

    def forward(self, x):
        self.check_input(x)
        height, width = x.shape[2:]
        # no negative operands in the size arithmetic: ONNX's integer Div / Mod do not floor
        x = F.pad(x, (0, (OUTPUT_STRIDE - width % OUTPUT_STRIDE) % OUTPUT_STRIDE,
                      0, (OUTPUT_STRIDE - height % OUTPUT_STRIDE) % OUTPUT_STRIDE))
        outs = []
        for i, (patch_embed, blocks, norm) in enumerate(self.layers):
            x, hw_shape = patch_embed(x)
            for block in blocks:
                x = _run_block(block, x, hw_shape, self.with_cp)
            x = norm(x)
            x = x.transpose(1, 2).reshape(x.shape[0], -1, *hw_shape)
            if i in self.out_indices:
                stride = 2**(i + 2)
                outs.append(x[:, :, :(height + stride - 1) // stride,
                              :(width + stride - 1) // stride].contiguous())
            if i == self.out_indices[-1]:
                break
        return tuple(outs)
