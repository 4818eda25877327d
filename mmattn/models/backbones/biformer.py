"""BiFormer (Zhu et al., CVPR 2023) as a dense-prediction backbone.

Numerics follow the official det/seg wrapper ``BiFormer_mm`` (rayleizhu/BiFormer,
``object_detection/models_mm/biformer_mm.py``, same in ``semantic_segmentation/``): the
classification trunk, all four stages returned, a LayerNorm2d on each *returned* map only, BRA
with ``auto_pad`` for any input size. The converter beside it maps the official key names.
"""

from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import ModuleList
import torch
from torch import nn

from mmattn.ops.routing import BiLevelRoutingAttention, GlobalAttentionLePE
from mmattn.registry import register_model
from ..layers import LayerNorm2d
from .base import DenseBackbone, Stage

GLOBAL_ATTENTION = -2  # official topk value selecting stage-4 global MHSA instead of BRA


class ConvStem(nn.Module):
    """Overlapping stride-4 patch embedding: (conv3x3 s2 + BN) -> GELU -> (conv3x3 s2 + BN)."""

    def __init__(self, in_channels, out_channels, norm_cfg=dict(type='BN')):
        super().__init__()
        mid = out_channels // 2
        self.conv1 = nn.Conv2d(in_channels, mid, 3, 2, 1)
        self.bn1 = build_norm_layer(norm_cfg, mid)[1]
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(mid, out_channels, 3, 2, 1)
        self.bn2 = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x):
        return self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class ConvDownsample(nn.Module):
    """conv3x3 stride 2 + BN between stages (no activation, no LayerNorm)."""

    def __init__(self, in_channels, out_channels, norm_cfg=dict(type='BN')):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.bn = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x):
        return self.bn(self.conv(x))


class BiFormerBlock(nn.Module):
    """x + dwconv3x3(x) -> x + attn(LN(x)) -> x + MLP(LN(x)); NCHW in and out.

    Args:
        embed_dims (int): channels.
        attn (nn.Module): token mixer on NHWC maps (BRA or global attention).
        mlp_ratio (float): hidden ratio of the MLP.
        drop_path (float): stochastic depth rate of both residual branches.
    """

    def __init__(self, embed_dims, attn, mlp_ratio=3., drop_path=0.):
        super().__init__()
        self.pos_conv = nn.Conv2d(embed_dims, embed_dims, 3, padding=1, groups=embed_dims)
        self.norm1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = attn
        self.norm2 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.ffn = FFN(embed_dims, int(mlp_ratio * embed_dims), act_cfg=dict(type='GELU'),
                       add_identity=False)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        x = x + self.pos_conv(x)
        x = x.permute(0, 2, 3, 1)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.ffn(self.norm2(x)))
        return x.permute(0, 3, 1, 2)


def _per_stage(value, name, num_stages=4):
    if isinstance(value, int):
        return [value] * num_stages
    value = list(value)
    if len(value) != num_stages:
        raise ValueError(f'{name} needs one value per stage ({num_stages}), got {value}')
    return value


@register_model
class BiFormer(DenseBackbone):
    """BiFormer backbone with bi-level routing attention.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'`` (or ``t/s/b``), or a dict with
            ``embed_dims``, ``depths``, ``num_heads`` (BRA heads) and ``mlp_ratios`` (4 values
            each). The older spelling ``head_dim`` (heads ``dim // head_dim``) and a scalar
            ``mlp_ratio`` are accepted. Default: ``'small'``.
        in_channels (int): input channels. Default: 3.
        n_win (int | Sequence[int]): regions per side S, one value or one per stage (unused by
            global-attention stages). Official: 7 ImageNet, 16 COCO, 8 ADE20K. Default: 16.
        topks (Sequence[int]): routed regions per query region and stage; ``-2`` selects the
            official global MHSA (stage 4). Default: ``(1, 4, 16, -2)``.
        auto_pad (bool): pad each BRA input to a multiple of ``n_win`` (official det/seg
            behaviour, any input size). ``False`` reproduces the classifier, which needs every
            BRA map divisible by ``n_win``. Default: True.
        global_heads (int): heads of the global stage; the official code keeps 8 whatever
            ``num_heads`` says. Default: 8.
        lepe_kernel (int): kernel of the depthwise local positional enhancement (LePE) on
            the values. Default: 5.
        drop_path_rate (float): stochastic depth, linear from 0 over all blocks. Default: 0.
        out_indices (Sequence[int]): stages whose maps are returned. Default: (0, 1, 2, 3).
        out_norms (bool): pass each returned map through its LayerNorm2d ``norm{i}`` (the
            official det/seg wrapper's ``extra_norms``); False returns the raw stage maps of
            the classification trunk and builds no ``norm{i}``. Default: True.
        frozen_stages (int): freeze the stem (0) and stages ``< frozen_stages`` with their
            output norms; -1 freezes nothing. Default: -1.
        norm_eval (bool): keep BatchNorm layers in eval mode in training (official det
            setting). Default: False.
        norm_cfg (dict): the BatchNorm of the stem and the downsampling convs, e.g.
            ``dict(type='SyncBN')`` for distributed training. Default: ``dict(type='BN')``.
        with_cp (bool): activation checkpointing per block to save memory. Default: False.
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained', checkpoint=path)``; official
            classification or det/seg files are converted on the fly when their pickle holds
            tensors only, else convert once with ``tools/convert_ckpt.py biformer``. None: the
            official init (trunc-normal Linear std .02). Default: None.
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(
            embed_dims=[64, 128, 256, 512], depths=[2, 2, 8, 2], num_heads=[2, 4, 8, 16],
            mlp_ratios=[3, 3, 3, 3])),
        **dict.fromkeys(['s', 'small'], dict(
            embed_dims=[64, 128, 256, 512], depths=[4, 4, 18, 4], num_heads=[2, 4, 8, 16],
            mlp_ratios=[3, 3, 3, 3])),
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=[96, 192, 384, 768], depths=[4, 4, 18, 4], num_heads=[3, 6, 12, 24],
            mlp_ratios=[3, 3, 3, 3])),
    }  # official head width 32
    docs_page = 'families/biformer.md'
    family = 'biformer'
    headline_arch = 'small'
    test_arch = dict(arch=dict(embed_dims=[16, 32, 32, 64], depths=[1, 1, 1, 1],
                               num_heads=[1, 2, 2, 4], mlp_ratios=[2, 2, 2, 2]), n_win=4)

    def __init__(self, arch='small', in_channels=3, n_win=16, topks=(1, 4, 16, -2), auto_pad=True,
                 global_heads=8, lepe_kernel=5, drop_path_rate=0., out_indices=(0, 1, 2, 3),
                 out_norms=True, frozen_stages=-1, norm_eval=False, norm_cfg=dict(type='BN'),
                 with_cp=False, init_cfg=None):
        super().__init__(arch, in_channels, out_indices, out_norms, frozen_stages, norm_eval,
                         with_cp, init_cfg)
        embed_dims = self.arch_settings['embed_dims']
        depths = self.arch_settings['depths']
        self.n_win = _per_stage(n_win, 'n_win')
        self.topks = _per_stage(topks, 'topks')
        for stage, topk in enumerate(self.topks):
            if topk != GLOBAL_ATTENTION and not 1 <= topk <= self.n_win[stage]**2:
                raise ValueError(f'stage {stage}: topk={topk} must be -2 (global attention) or '
                                 f'in [1, n_win**2={self.n_win[stage] ** 2}]')

        dpr = self.drop_path_rates(drop_path_rate, depths)
        self.stem = ConvStem(in_channels, embed_dims[0], norm_cfg)
        self.stages = ModuleList()
        for i in range(self.num_stages):
            dim = embed_dims[i]
            blocks = []
            for j in range(depths[i]):
                if self.topks[i] == GLOBAL_ATTENTION:
                    attn = GlobalAttentionLePE(dim, global_heads, lepe_kernel)
                else:
                    attn = BiLevelRoutingAttention(dim, self.arch_settings['num_heads'][i],
                                                   self.n_win[i], self.topks[i], lepe_kernel,
                                                   auto_pad)
                blocks.append(BiFormerBlock(dim, attn, self.arch_settings['mlp_ratios'][i],
                                            dpr[i][j]))
            downsample = ConvDownsample(embed_dims[i - 1], dim, norm_cfg) if i > 0 else None
            self.stages.append(Stage(downsample=downsample, blocks=blocks))
        # Each output norm normalises the returned copy only and the trunk continues
        # un-normalised: the official BiFormer_mm wrapper after its post-submission fix (the
        # first release fed the normalised map to the next stage).
        self.add_out_norms(lambda i: LayerNorm2d(embed_dims[i]))

    def _parse_arch(self, arch):
        if isinstance(arch, dict) and 'head_dim' in arch and 'num_heads' not in arch:
            arch = dict(arch)  # the older spelling: a head width instead of head counts
            head_dim = arch.pop('head_dim')
            dims = arch.get('embed_dims')
            if isinstance(dims, int):
                dims = [dims * 2**i for i in range(self.num_stages)]
            if dims is not None:
                arch['num_heads'] = [d // head_dim for d in dims]
        return self.parse_arch(arch, allow_extra_keys=True)

    def forward_stem(self, x):
        # channels-last from the image on (see forward_stage): the stem's convolutions then get
        # their output gradient in the layout of their input (a 3-channel copy here, against a
        # layout conversion of the 32-channel 400x608 map in the backward at 800x1216)
        return self.stem(x.contiguous(memory_format=torch.channels_last))

    def forward_stage(self, i, x):
        stage = self.stages[i]
        if stage.downsample is not None:
            x = stage.downsample(x)
        # Channels-last memory: every block works on NHWC tokens, and on this layout its
        # permutes between NCHW (convolutions) and NHWC (norms, attention, MLP) are views, so
        # the residual stream is never transposed (the convolutions keep the layout they get).
        x = self.run_blocks(stage.blocks, x.contiguous(memory_format=torch.channels_last))
        return x, x

    def stem_and_stages(self):
        return self.stem, self.stages
