"""Dual Vision Transformer (Yao et al., TPAMI 2023) as a dense-prediction backbone.

Numerics follow the official det/seg backbone ``DualVit`` (YehLi/ImageNetModel,
``object_detection/dualvit.py``; ``semantic_segmentation/mmseg/models/backbones/dualvit.py`` is
the same backbone): a BN conv stem, two
"sep" stages of DualBlocks (pixels and semantic tokens exchange information only through cross
attention), two "merge" stages of MergeBlocks (MHSA over ``[pixels ; semantics]``), and the
downstream differences: no classification head, the last block of stage 4 drops the semantic
tokens before its FFN, and the semantic-token count follows the input,
``M = floor(H1 / 7) * floor(W1 / 7)`` for the stride-4 map H1 x W1. There is no padding: odd
sizes run as they are (ceil at every stride-2 conv), exactly as the official backbone does.

Parameter names are the official ones (``patch_embed{i}``, ``block{i}.{j}.attn.kv_proxy``,
``proxy_embed{i}``, ``norm{i}``, ``norm_proxy{i}`` ...) except the model-level semantic-init
modules, which live under ``semantic_init.`` (official ``q`` -> ``semantic_init.query``).
"""

import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import ModuleList
from torch import nn

from mmattn.ops.dual import (LAYER_SCALE_INIT, POOL, DualPathAttention, MergeAttention,
                             SemanticTokenInit)
from mmattn.ops.common import tokens_to_map
from mmattn.registry import register_model
from .base import DenseBackbone

NUM_STAGES = 4
SEP_STAGES = 2  # stages 1-2 use DualBlocks, stages 3-4 MergeBlocks
LN_EPS = 1e-6  # the model's norm_layer (block norms, norm{i}, norm_proxy{i}); others use 1e-5


def _layer_norm(dims):
    return nn.LayerNorm(dims, eps=LN_EPS)


def _flatten(x):
    """NCHW -> (tokens (B, H*W, C) row-major, (H, W))."""
    return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])


class Stem(nn.Module):
    """``patch_embed1``: conv7x7 s2 + BN + ReLU, 2x (conv3x3 + BN + ReLU), conv3x3 s2 (bias),
    LayerNorm (eps 1e-5). BN layers sit at indices 1, 4, 7 of ``conv`` (official layout)."""

    def __init__(self, in_channels, hidden, out_channels, norm_cfg):
        super().__init__()
        layers = []
        for cin, k, s in [(in_channels, 7, 2), (hidden, 3, 1), (hidden, 3, 1)]:
            layers += [nn.Conv2d(cin, hidden, k, s, k // 2, bias=False),
                       build_norm_layer(norm_cfg, hidden)[1], nn.ReLU(inplace=True)]
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Conv2d(hidden, out_channels, 3, 2, 1)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x):
        x, hw = _flatten(self.proj(self.conv(x)))
        return self.norm(x), hw


class DownSample(nn.Module):
    """``patch_embed2..4``: conv3x3 stride 2 (bias) then LayerNorm (eps 1e-5)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x):
        x, hw = _flatten(self.proj(x))
        return self.norm(x), hw


class SemanticEmbed(nn.Module):
    """``proxy_embed{i}``: per-token Linear + LayerNorm (eps 1e-5); the count M never changes."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.proj_proxy = nn.Sequential(nn.Linear(in_channels, out_channels),
                                        nn.LayerNorm(out_channels))

    def forward(self, z):
        return self.proj_proxy(z)


class DWConv(nn.Module):
    """3x3 depthwise conv on tokens viewed row-major as (B, C, H, W)."""

    def __init__(self, dims):
        super().__init__()
        self.dwconv = nn.Conv2d(dims, dims, 3, 1, 1, groups=dims)

    def forward(self, x, hw):
        return self.dwconv(tokens_to_map(x, hw)).flatten(2).transpose(1, 2)


class PVT2FFN(nn.Module):
    """fc1 -> dwconv -> GELU -> fc2 (no activation between fc1 and the dwconv)."""

    def __init__(self, dims, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dims)

    def forward(self, x, hw):
        return self.fc2(self.act(self.dwconv(self.fc1(x), hw)))


class MergeFFN(PVT2FFN):
    """PVT2FFN on the first H*W tokens (pixels), ``fc_proxy`` MLP (hidden 2C) on the rest."""

    def __init__(self, dims, hidden):
        super().__init__(dims, hidden)
        self.fc_proxy = nn.Sequential(nn.Linear(dims, 2 * dims), nn.GELU(),
                                      nn.Linear(2 * dims, dims))

    def forward(self, t, hw):
        n = hw[0] * hw[1]
        return torch.cat([super().forward(t[:, :n], hw), self.fc_proxy(t[:, n:])], dim=1)


class DualBlock(nn.Module):
    """Stages 1-2 (official ``DualBlock``): semantic update inside ``attn``, then
    pixels <- semantics, FFN.

    Args:
        dims (int): channels C.
        num_heads (int): heads.
        mlp_hidden (int): PVT2FFN hidden width.
        drop_path (float): rate of the block's DropPath and of the one inside ``attn``.
    """

    def __init__(self, dims, num_heads, mlp_hidden, drop_path=0.):
        super().__init__()
        self.norm1 = _layer_norm(dims)
        self.attn = DualPathAttention(dims, num_heads, drop_path)
        self.norm2 = _layer_norm(dims)
        self.mlp = PVT2FFN(dims, mlp_hidden)
        self.gamma1 = nn.Parameter(LAYER_SCALE_INIT * torch.ones(dims))
        self.gamma2 = nn.Parameter(LAYER_SCALE_INIT * torch.ones(dims))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x, z, hw):
        out, z = self.attn(self.norm1(x), z)
        x = x + self.drop_path(self.gamma1 * out)
        x = x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x), hw))
        return x, z


class MergeBlock(nn.Module):
    """Stages 3-4 (official ``MergeBlock``): MHSA and FFN over ``[pixels ; semantics]`` with
    shared norms and layer scales. ``is_last`` (the last block of the official det/seg backbone
    only; the classifier keeps them for its head): the semantic tokens are dropped after the
    attention and the FFN is a pixel-only PVT2FFN (official ``fc_proxy`` keys unused).

    Args:
        dims (int): channels C.
        num_heads (int): heads.
        mlp_hidden (int): hidden width of the pixel FFN.
        drop_path (float): stochastic depth rate.
        is_last (bool): the network's last block (returns ``z = None``).
    """

    def __init__(self, dims, num_heads, mlp_hidden, drop_path=0., is_last=False):
        super().__init__()
        self.is_last = is_last
        self.norm1 = _layer_norm(dims)
        self.attn = MergeAttention(dims, num_heads)
        self.norm2 = _layer_norm(dims)
        self.mlp = (PVT2FFN if is_last else MergeFFN)(dims, mlp_hidden)
        self.gamma1 = nn.Parameter(LAYER_SCALE_INIT * torch.ones(dims))
        self.gamma2 = nn.Parameter(LAYER_SCALE_INIT * torch.ones(dims))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x, z, hw):
        n = x.shape[1]
        t = torch.cat([x, z], dim=1)  # pixels first
        t = t + self.drop_path(self.gamma1 * self.attn(self.norm1(t)))
        if self.is_last:
            x = t[:, :n]
            return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x), hw)), None
        t = t + self.drop_path(self.gamma2 * self.mlp(self.norm2(t), hw))
        return t[:, :n], t[:, n:]


def _tile_spans(length, tile):
    """[start, end) of ceil(length / tile) tiles; the last one ends at ``length``."""
    count = -(-length // tile)
    return [(i * tile, min(length, (i + 1) * tile)) if i < count - 1 else
            (max(0, length - tile), length) for i in range(count)]


@register_model
class DualViT(DenseBackbone):
    """Dual Vision Transformer backbone (official downstream ``DualVit``).

    Args:
        arch (str | dict): ``'s'``/``'small'``, ``'b'``/``'base'``, ``'l'``/``'large'``, or a
            dict with ``stem_hidden`` (int), ``embed_dims``, ``num_heads``, ``depths`` and
            ``mlp_ratios`` (4 values each; stage 3 alternates ratio r for even and r - 1 for
            odd blocks, as the official code). Default: ``'small'``.
        in_channels (int): input channels. Default: 3.
        drop_path_rate (float): stochastic depth, linear from 0 over all blocks; a DualBlock
            uses its rate for its own DropPath and for the one inside its attention.
            Official: 0.15 (S/B detection, S segmentation), 0.3 (B segmentation). Default: 0.
        out_indices (Sequence[int]): stages (0..3) whose maps, after ``norm{i+1}``, are
            returned. Default: (0, 1, 2, 3).
        out_norms (bool): ``norm1``..``norm3`` (official names, 1-based) are part of the trunk
            (their output feeds the next stage), so they stay; ``norm4`` is the only output norm
            (the classification model applies it in its head, after the stage-4 tokens). False
            builds no ``norm4`` and returns the raw stage-4 map. Default: True.
        frozen_stages (int): 0 freezes the stem; k >= 1 also stages 1..k with their
            downsamplers, norms, semantic embeddings and (stage 1) the semantic-token init;
            -1 freezes nothing. Default: -1.
        norm_eval (bool): keep the stem BatchNorms in eval mode while training. Default: False.
        stem_norm_cfg (dict): norm of the stem convs (the only BatchNorms). Official detection:
            ``dict(type='BN', requires_grad=False)`` (affine frozen, statistics updated);
            segmentation: ``dict(type='SyncBN', requires_grad=True)``. Default: ``dict(type='BN')``.
        with_cp (bool): activation checkpointing per block. Default: False.
        test_tile_size (int, optional): eval mode only: an input taller or wider than this is
            run as tiles of at most this size, each with its own semantic tokens, and the tiles'
            maps are pasted into the whole-image maps (the official mmseg backbone's
            ``forward_test`` with 768 for the ADE20K evaluation). A multiple of 32. None:
            always the whole image. Default: None.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=path)`` loads an official
            classification file (flat state dict or timm ``state_dict`` container), an official
            det/seg file or a converted one, through the ``dualvit`` converter (names checked
            strictly). None: the official init (trunc-normal Linear, fan-out normal convs).
            Default: None.
    """
    arch_zoo = {
        **dict.fromkeys(['s', 'small'], dict(
            stem_hidden=32, embed_dims=[64, 128, 320, 448], num_heads=[2, 4, 10, 14],
            depths=[3, 4, 6, 3], mlp_ratios=[8, 8, 4, 3])),
        **dict.fromkeys(['b', 'base'], dict(
            stem_hidden=64, embed_dims=[64, 128, 320, 512], num_heads=[2, 4, 10, 16],
            depths=[3, 4, 15, 3], mlp_ratios=[8, 8, 4, 3])),
        # no official downstream L backbone exists; same construction as S/B
        **dict.fromkeys(['l', 'large'], dict(
            stem_hidden=64, embed_dims=[96, 192, 384, 512], num_heads=[3, 6, 12, 16],
            depths=[3, 6, 21, 3], mlp_ratios=[8, 8, 4, 3])),
    }
    num_stages = NUM_STAGES
    docs_page = 'families/dualvit.md'
    family = 'dualvit'
    headline_arch = 'small'
    test_arch = dict(arch=dict(stem_hidden=8, embed_dims=[16, 32, 48, 64], num_heads=[2, 2, 3, 4],
                               depths=[1, 1, 1, 1], mlp_ratios=[4, 4, 4, 3]))
    # H1 = ceil(H / 4) >= 7: the semantic tokens are means of the 7x7 blocks of the stride-4 map
    # (no padding: M = floor(H1 / 7) * floor(W1 / 7)), so one needs one whole block
    min_input_size = 4 * (POOL - 1) + 1  # 25

    def __init__(self, arch='small', in_channels=3, drop_path_rate=0., out_indices=(0, 1, 2, 3),
                 out_norms=True, frozen_stages=-1, norm_eval=False, stem_norm_cfg=dict(type='BN'),
                 with_cp=False, test_tile_size=None, init_cfg=None):
        super().__init__(arch, in_channels, out_indices, out_norms, frozen_stages, norm_eval,
                         with_cp, init_cfg)
        settings = self.arch_settings
        dims, depths = settings['embed_dims'], settings['depths']
        if test_tile_size is not None and (
                isinstance(test_tile_size, bool) or not isinstance(test_tile_size, int)
                or test_tile_size < 32 or test_tile_size % 32):
            raise ValueError('test_tile_size must be None or a positive multiple of 32 (768 '
                             f'officially), got {test_tile_size!r}')
        self.test_tile_size = test_tile_size

        self.semantic_init = SemanticTokenInit(dims[0])
        dpr = self.drop_path_rates(drop_path_rate, depths)
        for i in range(NUM_STAGES):
            stage = i + 1
            if i == 0:
                self.patch_embed1 = Stem(in_channels, settings['stem_hidden'], dims[0],
                                         stem_norm_cfg)
            else:
                self.add_module(f'patch_embed{stage}', DownSample(dims[i - 1], dims[i]))
                self.add_module(f'proxy_embed{stage}', SemanticEmbed(dims[i - 1], dims[i]))
            blocks = []
            for j in range(depths[i]):
                # official quirk: stage 3's odd blocks use mlp ratio - 1 (4, 3, 4, 3, ...)
                ratio = settings['mlp_ratios'][i] - (1 if i == 2 and j % 2 else 0)
                if i < SEP_STAGES:
                    blocks.append(DualBlock(dims[i], settings['num_heads'][i],
                                            int(dims[i] * ratio), dpr[i][j]))
                else:
                    is_last = i == NUM_STAGES - 1 and j == depths[i] - 1
                    blocks.append(MergeBlock(dims[i], settings['num_heads'][i],
                                             int(dims[i] * ratio), dpr[i][j], is_last))
            self.add_module(f'block{stage}', ModuleList(blocks))
            if self._has_norm(stage):
                self.add_module(f'norm{stage}', _layer_norm(dims[i]))
            if stage < NUM_STAGES:
                self.add_module(f'norm_proxy{stage}', _layer_norm(dims[i]))

    def _parse_arch(self, arch):
        settings = self.parse_arch(
            arch, ('stem_hidden', 'embed_dims', 'num_heads', 'depths', 'mlp_ratios'))
        if isinstance(arch, str):
            return settings
        arch = settings
        self.check_widths(arch)
        if arch['depths'][3] < 1:
            raise ValueError(f'arch["depths"][3] must be >= 1, got {arch["depths"]}')
        return arch

    def _has_norm(self, stage):
        """Whether ``norm{stage}`` (1-based) exists: the trunk norms always, norm4 with
        ``out_norms``."""
        return stage < NUM_STAGES or self.out_norms

    def out_norm_module(self, i):
        return None  # norm{i+1} are trunk norms, applied inside the stage (official names)

    def forward(self, x):
        self.check_input(x)
        tile = self.test_tile_size
        if self.training or tile is None or max(x.shape[2:]) <= tile:
            return self.forward_stages(x)
        return self._forward_tiles(x, tile)

    def forward_stem(self, x):
        x, hw = self.patch_embed1(x)
        return x, self.semantic_init(x, hw), hw

    def forward_stage(self, i, state):
        x, z, hw = state
        stage = i + 1
        if i > 0:
            x, hw = getattr(self, f'patch_embed{stage}')(x)
            z = getattr(self, f'proxy_embed{stage}')(z)
        for block in getattr(self, f'block{stage}'):
            x, z = self.run_block(block, x, z, hw)
        if self._has_norm(stage):
            x = getattr(self, f'norm{stage}')(x)
        x = x.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2).contiguous()
        if stage < NUM_STAGES:
            z = getattr(self, f'norm_proxy{stage}')(z)
        return x, (x, z, hw)

    def _forward_tiles(self, x, tile):
        """Official mmseg test-time tiling (``forward_test`` of the official mmseg backbone):
        row-major tiles of ``tile`` pixels, the last row / column aligned to the image end; each
        tile's maps are pasted at the running offset of the previous tiles' map sizes (the last
        ones aligned to the map end), later tiles overwriting the overlap. The official code
        first runs the whole image only to allocate the maps (the tiles overwrite all of it), so
        mmattn computes the sizes instead.
        """
        sizes, hw = [], tuple(x.shape[2:])
        for i in range(NUM_STAGES):
            hw = tuple(-(-n // (4 if i == 0 else 2)) for n in hw)  # ceil at every stride-2 conv
            if i in self.out_indices:
                sizes.append(hw)
        rows, cols = _tile_spans(x.shape[2], tile), _tile_spans(x.shape[3], tile)
        outs, top = None, [0] * len(sizes)
        for r, (h0, h1) in enumerate(rows):
            left = [0] * len(sizes)
            for c, (w0, w1) in enumerate(cols):
                feats = self.forward_stages(x[:, :, h0:h1, w0:w1])
                if outs is None:
                    outs = [f.new_zeros(*f.shape[:2], *size) for f, size in zip(feats, sizes)]
                for j, (feat, (height, width)) in enumerate(zip(feats, sizes)):
                    fh, fw = feat.shape[2:]
                    at_row = height - fh if r == len(rows) - 1 else top[j]
                    at_col = width - fw if c == len(cols) - 1 else left[j]
                    outs[j][:, :, at_row:at_row + fh, at_col:at_col + fw] = feat
                    left[j] += fw
            top = [t + f.shape[2] for t, f in zip(top, feats)]
        return tuple(outs)

    def stage_modules(self, i):
        """Modules of stage i (0-based) in forward order, for freezing."""
        stage = i + 1
        names = ([] if i == 0 else [f'patch_embed{stage}', f'proxy_embed{stage}'])
        names += [f'block{stage}'] + ([f'norm{stage}'] if self._has_norm(stage) else [])
        names += [f'norm_proxy{stage}'] if stage < NUM_STAGES else []
        mods = [getattr(self, n) for n in names]
        return ([self.semantic_init] if i == 0 else []) + mods

    def stem_and_stages(self):
        return self.patch_embed1, [
            nn.ModuleList(self.stage_modules(i)) for i in range(NUM_STAGES)]

    def official_init(self):
        super().official_init()
        self.init_conv_fan_out()
        nn.init.trunc_normal_(self.semantic_init.query, std=.02, a=-2., b=2.)
