"""NAT (Hassani et al., CVPR 2023) and DiNAT (Hassani & Shi, 2022) as dense-prediction backbones.

Numerics follow the official det/seg backbones (SHI-Labs/Neighborhood-Attention-Transformer,
``detection/nat.py``, ``detection/dinat.py``, same in ``segmentation/``): a two-conv tokenizer, four
levels of pre-norm neighborhood-attention blocks (optional layer scale), conv downsamplers, and
an extra LayerNorm ``norm{i}`` on the *pre-downsample* map of every returned level. Maps smaller
than ``kernel_size * dilation`` are handled as NATTEN 0.14/0.15 did when the published
downstream weights were trained (the det/seg READMEs pin natten 0.14.2, whose
``NeighborhoodAttention2D`` pads; 0.17 refuses such maps): the LayerNorm-ed block input is zero
padded at the bottom/right before qkv and the attention output is cropped back.

Parameter names are the official ones (``patch_embed.proj.0``, ``levels.{i}.blocks.{j}.attn.rpb``,
``mlp.fc1``, ``gamma1``, ``levels.{i}.downsample.reduction``, ``norm{i}`` ...), so the converter
only drops the ImageNet classifier and adds the output norms.
"""

import torch
from mmcv.cnn.bricks import DropPath
from mmengine.model import ModuleList
from torch import nn

from mmattn.ops.neighborhood import NeighborhoodAttention
from mmattn.registry import register_model
from ..layers import Mlp
from .base import DenseBackbone, Stage

NUM_LEVELS = 4

# Named DiNAT dilation schedules of the official configs (classification/dinat.py, the COCO and
# ADE20K configs of detection/ and segmentation/), one entry per level. Levels 0, 1 and 3 must match
# the depth exactly; the level-2 pattern is repeated to fill its depth (6 or 18 blocks), as in the
# official configs. The first block of every level is undilated.
DILATION_SCHEDULES = {
    # 224-px ImageNet classification (all DiNAT checkpoints except the 384 ones)
    'imagenet': ([1, 8, 1], [1, 4, 1, 4], [1, 2], [1, 1, 1, 1, 1]),
    # DiNAT-Large 384 px, K=7 (the 384 11x11 model uses 'imagenet' with kernel_size=11)
    'imagenet384': ([1, 13, 1], [1, 6, 1, 6], [1, 3], [1, 1, 1, 1, 1]),
    # COCO detection configs (Mask R-CNN / Cascade, every size)
    'coco': ([1, 28, 1], [1, 7, 1, 14], [1, 3, 1, 5, 1, 7], [1, 3, 1, 3, 1]),
    # ADE20K UPerNet 512x512 (Mini / Tiny / Small / Base)
    'ade20k': ([1, 16, 1], [1, 4, 1, 8], [1, 2, 1, 3, 1, 4], [1, 2, 1, 2, 1]),
    # ADE20K UPerNet DiNAT-Large (the official "640x640" config)
    'ade20k_large': ([1, 20, 1], [1, 5, 1, 10],
                     [1, 2, 1, 3, 1, 4, 1, 5, 1, 2, 1, 3, 1, 4, 1, 5, 1, 5], [1, 2, 1, 2, 1]),
}


def expand_dilations(dilations, depths):
    """Per-block dilations ``[[d, ...] x 4]`` from None, a schedule name or a nested list.

    Raises:
        ValueError: unknown schedule name, wrong number of levels or blocks, or a dilation
            that is not an integer >= 1.
    """
    depths = list(depths)
    if dilations is None:
        return [[1] * n for n in depths]
    if isinstance(dilations, str):
        if dilations not in DILATION_SCHEDULES:
            raise ValueError(f'unknown dilation schedule {dilations!r}; choose one of '
                             f'{sorted(DILATION_SCHEDULES)} or pass one list per level')
        schedule = DILATION_SCHEDULES[dilations]
        out = []
        for level, (pattern, depth) in enumerate(zip(schedule, depths)):
            if level == 2 and depth % len(pattern) == 0:
                pattern = pattern * (depth // len(pattern))
            if len(pattern) != depth:
                raise ValueError(
                    f'dilation schedule {dilations!r} does not fit depths {depths}: level {level} '
                    f'has {depth} blocks but the schedule gives {len(pattern)} '
                    f'({list(schedule[level])}{" repeated" if level == 2 else ""}); '
                    'pass an explicit per-block list instead')
            out.append(list(pattern))
        return out
    if isinstance(dilations, (list, tuple)) and len(dilations) == NUM_LEVELS \
            and all(isinstance(d, (list, tuple)) for d in dilations):
        out = [list(d) for d in dilations]
        for level, (level_dils, depth) in enumerate(zip(out, depths)):
            if len(level_dils) != depth:
                raise ValueError(f'dilations[{level}] has {len(level_dils)} values but level '
                                 f'{level} has {depth} blocks (depths {depths})')
            for d in level_dils:
                if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                    raise ValueError(f'dilations must be integers >= 1, got {d!r} in level '
                                     f'{level}')
        return out
    raise ValueError('dilations must be None, a schedule name '
                     f'({sorted(DILATION_SCHEDULES)}) or one list of per-block dilations per '
                     f'level ({NUM_LEVELS} lists), got {dilations!r}')


class ConvTokenizer(nn.Module):
    """Stride-4 patch embedding: conv3x3 s2 -> conv3x3 s2 (no norm or activation between), then
    LayerNorm on channels-last. NCHW in, NHWC out."""

    def __init__(self, in_channels, embed_dims):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_channels, embed_dims // 2, 3, 2, 1),
            nn.Conv2d(embed_dims // 2, embed_dims, 3, 2, 1))
        self.norm = nn.LayerNorm(embed_dims)

    def forward(self, x):
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class ConvDownsampler(nn.Module):
    """conv3x3 stride 2 without bias, C -> 2C, then LayerNorm. NHWC in and out."""

    def __init__(self, embed_dims):
        super().__init__()
        self.reduction = nn.Conv2d(embed_dims, 2 * embed_dims, 3, 2, 1, bias=False)
        self.norm = nn.LayerNorm(2 * embed_dims)

    def forward(self, x):
        return self.norm(self.reduction(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class NATBlock(nn.Module):
    """Pre-norm block: x + gamma1 * NA(LN(x)), then x + gamma2 * MLP(LN(x)); NHWC in and out.

    A map smaller than ``kernel_size * dilation`` on either axis is zero padded at the
    bottom/right *after* ``norm1`` and before qkv, and the attention output is cropped back
    (the behaviour of NATTEN 0.14/0.15's ``NeighborhoodAttention2D``, with which the published
    downstream weights were trained: the padded tokens are not masked, their keys and values are
    the qkv bias).

    Args:
        embed_dims (int): channels C.
        num_heads (int): attention heads.
        kernel_size (int): odd neighborhood size K.
        dilation (int): neighborhood dilation d.
        mlp_ratio (float): MLP hidden width is ``int(C * mlp_ratio)``.
        layer_scale (float, optional): initial value of the learnable per-channel ``gamma1`` /
            ``gamma2``; None disables layer scale (no gamma parameters).
        drop (float): dropout after the attention projection and in the MLP.
        attn_drop (float): dropout on the attention probabilities.
        drop_path (float): stochastic depth rate of both residual branches.
    """

    def __init__(self, embed_dims, num_heads, kernel_size=7, dilation=1, mlp_ratio=3.,
                 layer_scale=None, drop=0., attn_drop=0., drop_path=0.):
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.norm1 = nn.LayerNorm(embed_dims)
        self.attn = NeighborhoodAttention(embed_dims, num_heads, kernel_size, dilation,
                                          qkv_bias=True, attn_drop=attn_drop, proj_drop=drop,
                                          rel_pos_bias=True)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(embed_dims)
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio), drop)
        # The official NATLayer enables layer scale when the value is a Python int or float (it
        # tests the type, so None disables it).
        self.layer_scale = isinstance(layer_scale, (int, float)) and \
            not isinstance(layer_scale, bool)
        if self.layer_scale:
            self.gamma1 = nn.Parameter(layer_scale * torch.ones(embed_dims))
            self.gamma2 = nn.Parameter(layer_scale * torch.ones(embed_dims))

    def attention(self, x):
        """NA on a LayerNorm-ed NHWC map of any size (padding path for small maps)."""
        return self.attn.forward_any_size(x)

    def forward(self, x):
        a = self.attention(self.norm1(x))
        x = x + self.drop_path(self.gamma1 * a if self.layer_scale else a)
        m = self.mlp(self.norm2(x))
        return x + self.drop_path(self.gamma2 * m if self.layer_scale else m)


@register_model
class NAT(DenseBackbone):
    """Neighborhood Attention Transformer backbone (NAT; DiNAT with ``dilations``).

    Args:
        arch (str | dict): ``'mini'``, ``'tiny'``, ``'small'``, ``'base'`` (or ``m/t/s/b``), or
            a dict with ``embed_dims`` (4 widths, each twice the last; an int E means E, 2E,
            4E, 8E), ``depths``, ``num_heads`` and ``mlp_ratios`` (4 values each; a scalar
            ``mlp_ratio`` is accepted) and optionally ``kernel_size`` (default 7) and
            ``layer_scale`` (float or None, default None). Default: ``'tiny'``.
        in_channels (int): input channels. Default: 3.
        kernel_size (int, optional): odd neighborhood size; None uses the arch's (7 for every
            official model except DiNAT-L 384 11x11). Default: None.
        dilations (None | str | Sequence[Sequence[int]]): per-block dilations. None: 1
            everywhere (NAT). A schedule name of :data:`DILATION_SCHEDULES` (``'imagenet'``,
            ``'imagenet384'``, ``'coco'``, ``'ade20k'``, ``'ade20k_large'``), or one list per
            level with one int per block. A ValueError names the mismatch when the lengths do
            not fit ``depths``. Default: None.
        drop_rate (float): dropout after the attention projection and in the MLPs (0 in every
            official setting). Default: 0.
        attn_drop_rate (float): attention-probability dropout (0 officially). Default: 0.
        drop_path_rate (float): stochastic depth, linear from 0 over all blocks. Default: 0.
        out_indices (Sequence[int]): levels whose pre-downsample maps are returned.
            Default: (0, 1, 2, 3).
        out_norms (bool): pass each returned map through its LayerNorm ``norm{i}`` (official
            det/seg backbones); False returns the raw pre-downsample maps of the
            classification trunk and builds no ``norm{i}``. Default: True.
        frozen_stages (int): freeze the tokenizer (0) and the levels ``< frozen_stages``
            (with their downsamplers and output norms); -1 freezes nothing. Default: -1.
        norm_eval (bool): keep BatchNorm layers in eval mode during training. NAT has no
            BatchNorm (LayerNorm only), so this has no effect; accepted for config parity with
            the other mmattn / mmdet backbones. Default: False.
        with_cp (bool): activation checkpointing per block. Default: False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=path[, prefix=...])``
            loads an official classification file (raw state dict), an official det/seg file
            (``state_dict`` with ``backbone.`` keys) or a converted file; names are checked
            strictly. None: the official classification init (trunc-normal Linear, std .02).
            Default: None.
    """
    arch_zoo = {
        **dict.fromkeys(['m', 'mini'], dict(
            embed_dims=[64, 128, 256, 512], depths=[3, 4, 6, 5], num_heads=[2, 4, 8, 16],
            mlp_ratios=[3.] * 4, kernel_size=7, layer_scale=None)),
        **dict.fromkeys(['t', 'tiny'], dict(
            embed_dims=[64, 128, 256, 512], depths=[3, 4, 18, 5], num_heads=[2, 4, 8, 16],
            mlp_ratios=[3.] * 4, kernel_size=7, layer_scale=None)),
        **dict.fromkeys(['s', 'small'], dict(  # NAT-Small has layer scale (DiNAT-Small has not)
            embed_dims=[96, 192, 384, 768], depths=[3, 4, 18, 5], num_heads=[3, 6, 12, 24],
            mlp_ratios=[2.] * 4, kernel_size=7, layer_scale=1e-5)),
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=[128, 256, 512, 1024], depths=[3, 4, 18, 5], num_heads=[4, 8, 16, 32],
            mlp_ratios=[2.] * 4, kernel_size=7, layer_scale=1e-5)),
    }
    num_levels = NUM_LEVELS
    channels_last = True
    docs_page = 'families/nat.md'
    family = 'nat'  # converter / load_pretrained family
    headline_arch = 'tiny'
    test_arch = dict(arch=dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                               num_heads=[1, 2, 4, 8], mlp_ratios=[2.] * 4), kernel_size=3)

    def __init__(self, arch='tiny', in_channels=3, kernel_size=None, dilations=None, drop_rate=0.,
                 attn_drop_rate=0., drop_path_rate=0., out_indices=(0, 1, 2, 3), out_norms=True,
                 frozen_stages=-1, norm_eval=False, with_cp=False, init_cfg=None):
        super().__init__(arch, in_channels, out_indices, out_norms, frozen_stages, norm_eval,
                         with_cp, init_cfg)
        if kernel_size is not None:
            self.arch_settings['kernel_size'] = kernel_size
        settings = self.arch_settings
        depths, heads = settings['depths'], settings['num_heads']
        self.kernel_size = settings['kernel_size']
        self.dilations = expand_dilations(dilations, depths)

        dpr = self.drop_path_rates(drop_path_rate, depths)
        self.patch_embed = ConvTokenizer(in_channels, self.embed_dims[0])
        self.levels = ModuleList()
        for i, dim in enumerate(self.embed_dims):
            blocks = [
                NATBlock(dim, heads[i], self.kernel_size, self.dilations[i][j],
                         settings['mlp_ratios'][i], settings['layer_scale'], drop_rate,
                         attn_drop_rate, dpr[i][j])
                for j in range(depths[i])
            ]
            downsample = ConvDownsampler(dim) if i < self.num_levels - 1 else None
            self.levels.append(Stage(blocks=blocks, downsample=downsample))
        self.add_out_norms(lambda i: nn.LayerNorm(self.embed_dims[i]))

    def _parse_arch(self, arch):
        settings = self.parse_arch(arch, optional_keys=('kernel_size', 'layer_scale'),
                                   defaults=dict(kernel_size=7, layer_scale=None))
        if isinstance(arch, str):
            return settings
        self.check_widths(settings, doubling=True)
        return settings

    def forward_stem(self, x):
        return self.patch_embed(x)

    def forward_stage(self, i, x):
        level = self.levels[i]
        x = self.run_blocks(level.blocks, x)
        return x, (x if level.downsample is None else level.downsample(x))

    def stem_and_stages(self):
        return self.patch_embed, self.levels


@register_model
class DiNAT(NAT):
    """Dilated Neighborhood Attention Transformer backbone: :class:`NAT` with dilations.

    Same arguments as :class:`NAT`; ``dilations`` defaults to the 224-px ImageNet schedule
    ``'imagenet'``. Downstream, pass the schedule of the task's official config: ``'coco'`` for
    the COCO detectors, ``'ade20k'`` for ADE20K UPerNet (``'ade20k_large'`` for DiNAT-L). Variants
    ``'mini'``, ``'tiny'``, ``'small'`` (no layer scale, unlike NAT-Small), ``'base'`` (layer
    scale 1e-5), ``'large'`` (E=192, no layer scale; ``kernel_size=11`` for the 11x11 files).
    """
    arch_zoo = {
        **{k: v for k, v in NAT.arch_zoo.items() if k not in ('s', 'small')},
        **dict.fromkeys(['s', 'small'], dict(
            embed_dims=[96, 192, 384, 768], depths=[3, 4, 18, 5], num_heads=[3, 6, 12, 24],
            mlp_ratios=[2.] * 4, kernel_size=7, layer_scale=None)),
        **dict.fromkeys(['l', 'large'], dict(
            embed_dims=[192, 384, 768, 1536], depths=[3, 4, 18, 5], num_heads=[6, 12, 24, 48],
            mlp_ratios=[2.] * 4, kernel_size=7, layer_scale=None)),
    }
    docs_page = 'families/nat.md'
    family = 'dinat'
    headline_arch = 'tiny'
    test_arch = dict(arch=dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                               num_heads=[1, 2, 4, 8], mlp_ratios=[2.] * 4), kernel_size=3,
                     dilations=[[2], [2], [1], [1]])

    def __init__(self, arch='tiny', in_channels=3, kernel_size=None, dilations='imagenet',
                 **kwargs):
        super().__init__(arch=arch, in_channels=in_channels, kernel_size=kernel_size,
                         dilations=dilations, **kwargs)
