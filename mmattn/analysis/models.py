"""Backbones by name for the analysis tools: 'TYPE[:ARCH]' for mmattn, presets for baselines,
'HOST[+OP]' for the stock hosts of the plug-in blocks."""
import importlib

import mmattn.models.backbones as mmattn_backbones
from mmattn.plug import PLUG_BLOCKS
from mmattn.registry import MODELS

# Baselines users know, as mmdet builds them (Swin-T: mmdet's swin config; PVTv2-B2: its pvt
# config). Not mmattn code: counted and timed for comparison only.
BASELINES = {
    'Swin-T': dict(type='SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
                   num_heads=[3, 6, 12, 24], window_size=7, drop_path_rate=0.),
    'PVTv2-B2': dict(type='PyramidVisionTransformerV2', embed_dims=64, num_layers=[3, 4, 6, 3]),
}


# Stock hosts of the plug-in blocks (docs/plugin.md) and the ops
# a 'HOST+OP' spec adds: in R-50 as mmcv plugins after conv2 of every bottleneck in stages 2-4,
# in the transformers through AttentionSwap in stages 2-3 (0-based), as configs/plug does.
PLUG_HOSTS = {
    'R-50': dict(type='mmdet.ResNet', depth=50),
    'Swin-T': dict(BASELINES['Swin-T'], type='mmdet.SwinTransformer'),
    'PVTv2-B2': dict(BASELINES['PVTv2-B2'], type='mmdet.PyramidVisionTransformerV2'),
    'MiT-B0': dict(type='mmseg.MixVisionTransformer', embed_dims=32, num_layers=[2, 2, 2, 2],
                   num_heads=[1, 2, 5, 8]),
}
PLUG_OPS = {cls.short_name: cls.__name__ for cls in PLUG_BLOCKS}  # declared by each block


def plug_specs() -> list:
    """Every host alone, then with each op: 'R-50', 'R-50+bra', ..., 'MiT-B0+dual'."""
    return [f'{host}{"+" + op if op else ""}' for host in PLUG_HOSTS for op in ('', *PLUG_OPS)]


def plug_cfg(spec: str) -> dict:
    """The backbone config of 'HOST' or 'HOST+OP' (see :data:`PLUG_HOSTS`)."""
    host, _, op = spec.partition('+')
    if host not in PLUG_HOSTS or (op and op not in PLUG_OPS):
        raise ValueError(f'unknown plug spec {spec!r}; choose HOST[+OP] with HOST in '
                         f'{sorted(PLUG_HOSTS)} and OP in {sorted(PLUG_OPS)}')
    cfg = dict(PLUG_HOSTS[host])
    if not op:
        return cfg
    attn = dict(type=PLUG_OPS[op])
    if host == 'R-50':
        return dict(cfg, plugins=[dict(cfg=attn, stages=(False, True, True, True),
                                       position='after_conv2')])
    return dict(type='AttentionSwap', backbone=cfg, stages=(2, 3), attn=attn)


def family_classes() -> dict:
    """Every backbone class mmattn exports: picks up new families as they are registered."""
    return {name: getattr(mmattn_backbones, name) for name in mmattn_backbones.__all__}


def default_backbones() -> list:
    """Every family's headline variant (each backbone class's ``headline_arch``), then the
    baselines."""
    specs = []
    for name, cls in family_classes().items():
        arch = cls.headline_arch  # declared by the backbone class, beside its arch_zoo
        specs.append(f'{name}:{arch}' if arch else name)
    return specs + list(BASELINES)


def backbone_cfg(spec: str, **kwargs) -> tuple:
    """('mmattn' | 'mmdet', config dict) of 'TYPE[:ARCH]', a baseline name or a plug spec
    'HOST[+OP]' (:func:`plug_cfg`).

    Raises:
        ValueError: an unknown type, arch or baseline, naming the allowed values.
    """
    if spec in BASELINES:
        return 'mmdet', dict(BASELINES[spec], **kwargs)
    if spec.partition('+')[0] in PLUG_HOSTS:
        return 'mmattn', dict(plug_cfg(spec), **kwargs)
    type_name, _, arch = spec.partition(':')
    families = family_classes()
    if type_name not in families:
        raise ValueError(f'unknown backbone {spec!r}; choose TYPE[:ARCH] with TYPE in '
                         f'{sorted(families)}, or a baseline in {sorted(BASELINES)}')
    cfg = dict(type=type_name, **kwargs)
    if arch:
        zoo = getattr(families[type_name], 'arch_zoo', {})
        if arch not in zoo:
            raise ValueError(f'unknown arch {arch!r} for {type_name}; choose one of '
                             f'{sorted(zoo)}')
        cfg['arch'] = arch
    return 'mmattn', cfg


def build_backbone(spec: str, **kwargs):
    """Build 'TYPE[:ARCH]' (extra constructor kwargs allowed) or a baseline name."""
    scope, cfg = backbone_cfg(spec, **kwargs)
    if scope == 'mmdet':
        importlib.import_module('mmdet.models.backbones')  # registers Swin, PVTv2
        from mmdet.registry import MODELS as MMDET_MODELS
        return MMDET_MODELS.build(cfg)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):  # ResNet plugins resolve in a scope
        return MODELS.build(cfg)


def short_name(spec: str) -> str:
    """'BiFormer:small' -> 'BiFormer-small' for tables and plot legends."""
    return spec.replace(':', '-')
