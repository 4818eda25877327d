"""``AttentionSwap``: a stock transformer backbone whose attention is an mmattn op in chosen stages.

mmdet's ``SwinTransformer`` and ``PyramidVisionTransformer(V2)`` and mmseg's
``MixVisionTransformer`` (SegFormer) all call their attention as ``attn(x, hw_shape)`` /
``attn(x, hw_shape, identity=x)`` on (B, H*W, C) tokens after ``norm1``; the plug-in blocks of
:mod:`mmattn.plug.blocks` take that call too. The wrapper builds the host, replaces the
``attn`` of every block of the chosen stages by the configured block (width and, unless given,
heads from the host stage; the host's stochastic depth kept; no residual of its own: the host
block adds it) and leaves every other module untouched, so the stock checkpoint still loads.

Loading (``init_cfg=dict(type='Pretrained', checkpoint=...)`` on the wrapper, or the same on the
host, which the wrapper takes over) is strict and accounted for in the log: every host weight
outside the swapped attention must come from the checkpoint (else one error listing the keys);
the replaced attention's weights in the checkpoint are reported as not used; output norms a
classification checkpoint lacks and classifier weights it has are reported, not guessed.
"""
import copy
import re
from typing import Optional, Sequence

from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import CheckpointLoader

from mmattn.converters.common import CheckpointKeyError, describe_mismatch, unwrap_state_dict
from mmattn.registry import MODELS, register_model

from .blocks import PLUG_BLOCKS, AttentionBlock2d


def _swin_blocks(host, stage):
    return host.stages[stage].blocks


def _pvt_blocks(host, stage):  # PVT(v2) and MiT: layers[i] = [patch_embed, blocks, norm]
    return [blk for blk in host.layers[stage][1] if hasattr(blk, 'attn')]


def _swin_converter():
    from mmdet.models.backbones.swin import swin_converter
    return swin_converter


def _pvt_converter():
    from mmdet.models.backbones.pvt import pvt_convert
    return pvt_convert


# class name -> (number of stages, blocks of a stage, attention width, attention heads, its
# DropPath, converter of official keys used when the host has convert_weights=True,
# classification-only key prefixes)
HOSTS = {
    'SwinTransformer': dict(
        num_stages=lambda h: len(h.stages), blocks=_swin_blocks,
        width=lambda a: a.w_msa.embed_dims, heads=lambda a: a.w_msa.num_heads,
        drop=lambda a: a.drop, converter=_swin_converter, unused=('head.', 'norm.')),
    'PyramidVisionTransformer': dict(
        num_stages=lambda h: len(h.layers), blocks=_pvt_blocks,
        width=lambda a: a.embed_dims, heads=lambda a: a.num_heads,
        drop=lambda a: a.dropout_layer, converter=_pvt_converter, unused=('head.', 'norm.')),
    'MixVisionTransformer': dict(
        num_stages=lambda h: len(h.layers), blocks=_pvt_blocks,
        width=lambda a: a.embed_dims, heads=lambda a: a.num_heads,
        drop=lambda a: a.dropout_layer, converter=None, unused=('head.', )),
}


def _host_entry(host):
    for cls in type(host).__mro__:
        if cls.__name__ in HOSTS:
            return HOSTS[cls.__name__]
    raise TypeError(f'AttentionSwap: {type(host).__name__} is not a supported host; supported: '
                    f'{sorted(HOSTS)} (mmdet SwinTransformer / PyramidVisionTransformer(V2), '
                    'mmseg MixVisionTransformer)')


def _indices(name: str, values, count: int, where: str) -> tuple:
    """``values`` as a tuple after one rule for ``stages`` and ``blocks``: a non-empty sequence of
    distinct 0-based ints below ``count`` (no negative indices)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f'AttentionSwap: {name} must be a sequence of 0-based ints, e.g. (2, 3); '
                        f'got {values!r}')
    values = tuple(values)
    if not values:
        raise ValueError(f'AttentionSwap: {name} is empty, so nothing would be swapped')
    singular = name[:-1]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f'AttentionSwap: {name} must hold ints, got {value!r} in {values}')
        if not 0 <= value < count:
            raise ValueError(f'AttentionSwap: {singular} {value} does not exist: {where} has '
                             f'{count} {name}, indices 0 to {count - 1} (0-based, no negative '
                             'indices)')
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f'AttentionSwap: {name} {values} names {singular} {repeated[0]} more than '
                         'once; list each once')
    return values


def _is_pretrained(init_cfg):
    """``dict(type='Pretrained', checkpoint=...)``, or mmdet PVT's ``dict(checkpoint=...)``."""
    return isinstance(init_cfg, dict) and (init_cfg.get('type') == 'Pretrained' or (
        'type' not in init_cfg and 'checkpoint' in init_cfg))


@register_model
class AttentionSwap(BaseModule):
    """A stock transformer backbone with an mmattn attention in chosen stages.

    Example (mmdet config)::

        backbone=dict(
            type='AttentionSwap',
            backbone=dict(type='mmdet.SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
                          num_heads=[3, 6, 12, 24], out_indices=(0, 1, 2, 3),
                          init_cfg=dict(type='Pretrained', checkpoint='swin_tiny.pth')),
            stages=(2, 3),
            attn=dict(type='NeighborhoodAttention2d', kernel_size=7))

    Args:
        backbone (dict): the host config (``mmdet.SwinTransformer``,
            ``mmdet.PyramidVisionTransformerV2``, ``mmseg.MixVisionTransformer``, ...).
        attn (dict): a plug-in block config (:mod:`mmattn.plug.blocks`) without
            ``in_channels``; ``num_heads`` defaults to the host stage's heads (a block with
            ``fixed_heads``, as the group-mix block's 8, keeps its own). ``residual`` is
            forced to False (the host adds it); ``zero_init`` defaults to True (the swapped
            stage starts as its MLP path only).
        stages (Sequence[int]): host stages whose attention is replaced: distinct 0-based
            indices (no negative ones). Defaults to (2, 3).
        blocks (Sequence[int], optional): block indices inside each of those stages, under the
            same rule; None replaces every block. Defaults to None.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=..., prefix=None)``
            for a stock host checkpoint (a host ``Pretrained`` init_cfg is taken over).
    """
    docs_page = 'plugin.md'

    def __init__(self, backbone: dict, attn: dict, stages: Sequence[int] = (2, 3),
                 blocks: Optional[Sequence[int]] = None, init_cfg=None):
        backbone = copy.deepcopy(backbone)
        if _is_pretrained(backbone.get('init_cfg')):
            if init_cfg is not None:
                raise ValueError('AttentionSwap: give Pretrained either to the wrapper or to the '
                                 'host backbone, not both')
            init_cfg = backbone.pop('init_cfg')
        if init_cfg is not None and not _is_pretrained(init_cfg):
            raise ValueError(f'AttentionSwap: init_cfg must be dict(type="Pretrained", '
                             f'checkpoint=...) or None, got {init_cfg}')
        super().__init__(init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        entry = _host_entry(self.backbone)
        self._convert = entry['converter'] if getattr(self.backbone, 'convert_weights',
                                                      False) else None
        self._unused_prefixes = entry['unused']
        host_name = type(self.backbone).__name__
        self.stages = _indices('stages', stages, entry['num_stages'](self.backbone), host_name)
        self.swapped = []  # (prefix of the host's attention, new block)
        for stage in self.stages:
            stage_blocks = entry['blocks'](self.backbone, stage)
            chosen = range(len(stage_blocks)) if blocks is None else _indices(
                'blocks', blocks, len(stage_blocks), f'stage {stage} of {host_name}')
            for index in chosen:
                host_block = stage_blocks[index]
                block = self._build_block(attn, entry, host_block.attn)
                host_block.attn = block
                self.swapped.append((self._prefix_of(block), block))

    @staticmethod
    def _build_block(attn, entry, host_attn):
        cfg = dict(copy.deepcopy(attn), in_channels=entry['width'](host_attn), residual=False)
        cfg.setdefault('zero_init', True)
        block_cls = MODELS.get(cfg['type'])
        if not (isinstance(block_cls, type) and issubclass(block_cls, AttentionBlock2d)):
            raise TypeError(f'AttentionSwap: attn type {cfg["type"]!r} is not an mmattn plug-in '
                            f'block ({", ".join(cls.__name__ for cls in PLUG_BLOCKS)})')
        if 'num_heads' not in cfg and block_cls.fixed_heads is None:
            cfg['num_heads'] = entry['heads'](host_attn)
        block = MODELS.build(cfg)
        block.drop_path = entry['drop'](host_attn)
        return block

    def _prefix_of(self, block):
        return next(name for name, module in self.backbone.named_modules()
                    if module is block) + '.'

    def forward(self, x):
        return self.backbone(x)

    def init_weights(self):
        pretrained = self.init_cfg if _is_pretrained(self.init_cfg) else None
        self.backbone.init_weights()  # host initialisers (random init of every host weight)
        if pretrained is not None:
            self.load_host_checkpoint(pretrained['checkpoint'], pretrained.get('prefix'))
        for _, block in self.swapped:  # after the host's initialisers, which also hit blocks
            block.init_weights()
        self._is_init = True

    def load_host_checkpoint(self, checkpoint, prefix: Optional[str] = None) -> dict:
        """Load a stock host checkpoint into everything but the swapped attention.

        Returns:
            dict: key lists ``loaded``, ``new`` (swapped attention), ``not_used`` (the
            replaced attention's weights in the checkpoint), ``output_norms`` (absent from the
            checkpoint, left at their LayerNorm init) and ``classifier`` (unused head keys).
        """
        state = unwrap_state_dict(CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu'))
        if prefix:
            prefix = prefix if prefix.endswith('.') else prefix + '.'
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not state:
                raise CheckpointKeyError(f'no key of {checkpoint} starts with {prefix!r}')
        if self._convert is not None:
            state = self._convert()(state)
        own = self.backbone.state_dict()
        replaced = tuple(p for p, _ in self.swapped)
        in_swap = [k for k in own if k.startswith(replaced)]
        not_used = sorted(k for k in state if k.startswith(replaced))
        classifier = sorted(k for k in state if k not in own and k.startswith(self._unused_prefixes)
                            and not k.startswith(replaced))
        unexpected = sorted(set(state) - set(own) - set(not_used) - set(classifier))
        missing = sorted(k for k in own if k not in state and not k.startswith(replaced))
        output_norms = [k for k in missing if re.match(r'^norm\d\.', k)]
        missing = [k for k in missing if k not in output_norms]
        mis_shaped = sorted(f'{k}: checkpoint {tuple(state[k].shape)} vs model '
                            f'{tuple(own[k].shape)}' for k in own
                            if k in state and not k.startswith(replaced)
                            and state[k].shape != own[k].shape)
        if missing or unexpected or mis_shaped:
            raise CheckpointKeyError(describe_mismatch(
                f'{checkpoint} does not fit {type(self.backbone).__name__} outside the swapped '
                'attention:', missing, unexpected, mis_shaped))
        loaded = {k: state[k] for k in own if k in state and not k.startswith(replaced)}
        self.backbone.load_state_dict(loaded, strict=False)  # the rest is accounted for above
        report = dict(loaded=sorted(loaded), new=in_swap, not_used=not_used,
                      output_norms=output_norms, classifier=classifier)
        stages = ', '.join(str(s) for s in self.stages)
        print_log(
            f'AttentionSwap: loaded {len(loaded)} tensors of {type(self.backbone).__name__} from '
            f'{checkpoint}; new (swapped attention, stages {stages}): {len(in_swap)} tensors; '
            f'replaced attention in the checkpoint, not used: {len(not_used)} tensors'
            + (f'; output norms not in the checkpoint (LayerNorm init): {output_norms}'
               if output_norms else '')
            + (f'; classifier weights not used: {len(classifier)}' if classifier else ''),
            logger='current')
        return report
