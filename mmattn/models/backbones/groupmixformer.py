"""GroupMixFormer (Ge et al., arXiv 2311.15157) as a dense-prediction backbone.

Numerics follow the official model (AILab-CVC/GroupMixFormer, ``models/groupmixformer.py``): a
stride-4 two-conv stem with BN + Hardswish, then four stages that each start with a separable-conv
patch embedding (stride 1 for stage 0: an extra embedding after the stride-4 stem, easy to drop by
mistake) and run pre-norm blocks ``x = x + dwconv(x)`` (per-block CPE whose output is the residual
stream), ``x + DropPath(GMA(LN(x)))``, ``x + DropPath(MLP(LN(x)))``. The stage maps are returned as
they are: no output norms (the official ``return_interm_layers`` path).

The official code only accepts inputs whose sides are multiples of 32 (it computes sizes as
``H // 2`` while its stride-2 convs give ``ceil(H / 2)``, and asserts on odd sizes); here the
input is zero padded at the bottom/right to the next multiple of 32, exactly what mmdet's
``pad_size_divisor=32`` does, and the outputs are cropped to ``ceil(H / stride)``. The padded
zeros take part in the global token softmax and the batch statistics, as they would after the
data preprocessor's padding.
"""

import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import ModuleList
from torch import nn

from mmattn.ops.group_mix import (NUM_HEADS, GroupMixAttention, SeparableConv2d,
                                  check_embed_dims)
from mmattn.ops.common import tokens_to_map
from mmattn.registry import register_model
from ..layers import Mlp
from .base import DenseBackbone, Stage

LN_EPS = 1e-6


class ConvStem(nn.Module):
    """conv3x3 s2 (bias) -> BN -> Hardswish -> conv3x3 s2 (bias) -> BN -> Hardswish."""

    def __init__(self, in_channels, embed_dims, norm_cfg):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, embed_dims // 2, 3, 2, 1)
        self.bn1 = build_norm_layer(norm_cfg, embed_dims // 2)[1]
        self.conv2 = nn.Conv2d(embed_dims // 2, embed_dims, 3, 2, 1)
        self.bn2 = build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(self, x):
        x = F.hardswish(self.bn1(self.conv1(x)))
        return F.hardswish(self.bn2(self.conv2(x)))


class PatchEmbed(nn.Module):
    """Separable conv3x3 (stride 1 or 2) -> BN -> Hardswish; NCHW in and out."""

    def __init__(self, in_channels, embed_dims, stride, norm_cfg):
        super().__init__()
        self.conv = SeparableConv2d(in_channels, embed_dims, 3, stride)
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(self, x):
        return F.hardswish(self.norm(self.conv(x)))


class GroupMixBlock(nn.Module):
    """CPE, then pre-norm group-mix attention and MLP; NCHW in and out.

    Args:
        embed_dims (int): channels C (a multiple of 10).
        mlp_ratio (float): MLP hidden width ``int(C * mlp_ratio)``.
        drop (float): dropout after the attention projection and in the MLP.
        drop_path (float): stochastic depth of both residual branches (one module, a fresh
            mask per call, as the official block).
        norm_cfg (dict): BatchNorm of the attention's aggregators.
    """

    def __init__(self, embed_dims, mlp_ratio, drop=0., drop_path=0., norm_cfg=dict(type='BN')):
        super().__init__()
        self.cpe = nn.Conv2d(embed_dims, embed_dims, 3, 1, 1, groups=embed_dims)
        self.norm1 = nn.LayerNorm(embed_dims, eps=LN_EPS)
        self.attn = GroupMixAttention(embed_dims, proj_drop=drop, norm_cfg=norm_cfg)
        self.norm2 = nn.LayerNorm(embed_dims, eps=LN_EPS)
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio), drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        hw = x.shape[2:]
        x = (x + self.cpe(x)).flatten(2).transpose(1, 2)  # the CPE output is the residual stream
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return tokens_to_map(x, hw)


@register_model
class GroupMixFormer(DenseBackbone):
    """GroupMixFormer backbone: four NCHW maps at strides 4, 8, 16, 32.

    Args:
        arch (str | dict): ``'miny'`` (``'m'``, ``'mini'``), ``'tiny'`` (``'t'``), ``'small'``
            (``'s'``), ``'base'`` (``'b'``), ``'large'`` (``'l'``; the official yaml marked
            "need to adjust", no released weights), or a dict with ``embed_dims`` (multiples of
            10), ``depths`` and ``mlp_ratios`` (4 values each) and optionally ``num_heads``
            (fixed at 8 per stage: 4 attention segments of 2 heads, the fifth segment is a
            convolution branch). Default: ``'small'``.
        in_channels (int): input channels. Default: 3.
        drop_rate (float): dropout after the attention projection and in the MLPs (0 in every
            official setting). Default: 0.
        drop_path_rate (float): stochastic depth, linear from 0 over all blocks. Default: 0.
        out_indices (Sequence[int]): stages whose maps are returned. Default: (0, 1, 2, 3).
        out_norms (bool): accepted for parity with the other backbones: the official
            downstream backbone has no output norms, so the maps are the raw stage maps either
            way (True keeps parameter-free ``norm{i}`` identities). Default: True.
        frozen_stages (int): freeze the stem (0) and the stages ``< frozen_stages`` (with their
            patch embeddings); -1 freezes nothing. Default: -1.
        norm_eval (bool): keep every BatchNorm in eval mode while training (running statistics
            frozen; useful with 2 images per GPU, i.e. 6 stacked q/k/v images per aggregator BN
            call). Default: False.
        norm_cfg (dict): every BatchNorm (stem, patch embeddings, aggregators); the official
            code uses SyncBN. Default: ``dict(type='BN')``.
        with_cp (bool): activation checkpointing per block. Default: False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=path[, prefix=...])``
            loads an official ImageNet file (weights under ``model``, ``norm4``/``head``
            dropped) or a converted / mmattn file, names checked strictly. None: the official
            init (trunc-normal Linear std .02, zero biases, LayerNorm 1/0). Default: None.
    """
    arch_zoo = {
        **dict.fromkeys(['m', 'mini', 'miny'], dict(
            embed_dims=[40, 80, 160, 160], depths=[3, 3, 12, 4], num_heads=[NUM_HEADS] * 4,
            mlp_ratios=[4, 4, 4, 4])),
        **dict.fromkeys(['t', 'tiny'], dict(
            embed_dims=[80, 160, 200, 240], depths=[4, 4, 12, 4], num_heads=[NUM_HEADS] * 4,
            mlp_ratios=[4, 4, 4, 4])),
        **dict.fromkeys(['s', 'small'], dict(
            embed_dims=[80, 160, 320, 320], depths=[2, 4, 12, 4], num_heads=[NUM_HEADS] * 4,
            mlp_ratios=[4, 4, 4, 4])),
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=[200, 240, 320, 480], depths=[8, 8, 12, 8], num_heads=[NUM_HEADS] * 4,
            mlp_ratios=[2, 2, 4, 4])),
        # the official yaml says "need to adjust": 71.8M, not the official README's 70.3M
        **dict.fromkeys(['l', 'large'], dict(
            embed_dims=[240, 320, 360, 480], depths=[8, 10, 30, 10], num_heads=[NUM_HEADS] * 4,
            mlp_ratios=[4, 4, 2, 2])),
    }
    docs_page = 'families/groupmixformer.md'
    family = 'groupmixformer'
    headline_arch = 'small'
    test_arch = dict(arch=dict(embed_dims=[10, 20, 30, 40], depths=[1, 1, 1, 1],
                               num_heads=[NUM_HEADS] * 4, mlp_ratios=[2, 2, 4, 4]))
    # the official stride-2 steps compute sizes as H // 2 while the convs give ceil(H / 2):
    # sides must stay even down to stride 32
    size_divisor = 32

    def __init__(self, arch='small', in_channels=3, drop_rate=0., drop_path_rate=0.,
                 out_indices=(0, 1, 2, 3), out_norms=True, frozen_stages=-1, norm_eval=False,
                 norm_cfg=dict(type='BN'), with_cp=False, init_cfg=None):
        super().__init__(arch, in_channels, out_indices, out_norms, frozen_stages, norm_eval,
                         with_cp, init_cfg)
        dims = self.arch_settings['embed_dims']
        depths = self.arch_settings['depths']

        dpr = self.drop_path_rates(drop_path_rate, depths)
        self.stem = ConvStem(in_channels, dims[0], norm_cfg)
        self.stages = ModuleList()
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            # stage 0: a stride-1 embedding after the stride-4 stem (official, easy to miss)
            patch_embed = PatchEmbed(dims[max(i - 1, 0)], dim, 2 if i else 1, norm_cfg)
            blocks = [GroupMixBlock(dim, self.arch_settings['mlp_ratios'][i], drop_rate,
                                    dpr[i][j], norm_cfg) for j in range(depth)]
            self.stages.append(Stage(patch_embed=patch_embed, blocks=blocks))
        # The official downstream path (models/groupmixformer.py, return_interm_layers=True)
        # has no output norms; real ones would change the features of a loaded checkpoint.
        # The identities only keep the norm{i} names of the other backbones.
        self.add_out_norms(lambda i: nn.Identity())

    def _parse_arch(self, arch):
        settings = self.parse_arch(arch, ('embed_dims', 'depths', 'mlp_ratios'),
                                   optional_keys=('num_heads', ),
                                   defaults=dict(num_heads=[NUM_HEADS] * self.num_stages))
        if isinstance(arch, str):
            return settings
        if any(h != NUM_HEADS for h in settings['num_heads']):
            raise ValueError(f"arch['num_heads'] is fixed by group-mix attention ({NUM_HEADS} "
                             f"per stage), got {settings['num_heads']}")
        for i, dim in enumerate(settings['embed_dims']):
            try:
                check_embed_dims(dim)
            except ValueError as exc:
                raise ValueError(f"arch['embed_dims'][{i}]: {exc}") from None
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 1
               for d in settings['depths']):
            raise ValueError(f"arch['depths'] must be integers >= 1, got {settings['depths']}")
        return settings

    def forward_stem(self, x):
        return self.stem(x)

    def forward_stage(self, i, x):
        stage = self.stages[i]
        x = self.run_blocks(stage.blocks, stage.patch_embed(x))
        return x, x

    def stem_and_stages(self):
        return self.stem, self.stages
