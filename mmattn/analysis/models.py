"""Backbones by name for the analysis tools: 'TYPE[:ARCH]' for mmattn, presets for baselines."""
import importlib

import mmattn.models.backbones as mmattn_backbones
from mmattn.registry import MODELS

# The variant each family headlines in its det/seg tables (specs/<family>.md), ~25-30 M params
# like the baselines users compare against.
HEADLINE_ARCH = {
    'BiFormer': 'small', 'NAT': 'tiny', 'DiNAT': 'tiny', 'DualViT': 'small',
    'GroupMixFormer': 'small', 'SlideSwin': 'tiny', 'SlidePVT': 'small'
}

# Baselines users know, as mmdet builds them (Swin-T: mmdet's swin config; PVTv2-B2: its pvt
# config). Not mmattn code: counted and timed for comparison only.
BASELINES = {
    'Swin-T': dict(type='SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
                   num_heads=[3, 6, 12, 24], window_size=7, drop_path_rate=0.),
    'PVTv2-B2': dict(type='PyramidVisionTransformerV2', embed_dims=64, num_layers=[3, 4, 6, 3]),
}


def family_classes() -> dict:
    """Every backbone class mmattn exports: picks up new families as they are registered."""
    return {name: getattr(mmattn_backbones, name) for name in mmattn_backbones.__all__}


def headline_arch(cls) -> str:
    if cls.__name__ in HEADLINE_ARCH:
        return HEADLINE_ARCH[cls.__name__]
    zoo = getattr(cls, 'arch_zoo', {})
    return next((k for k in ('small', 's', 'tiny', 't') if k in zoo), next(iter(zoo), None))


def default_backbones() -> list:
    """Every family's headline variant, then the baselines."""
    specs = []
    for name, cls in family_classes().items():
        arch = headline_arch(cls)
        specs.append(f'{name}:{arch}' if arch else name)
    return specs + list(BASELINES)


def backbone_cfg(spec: str, **kwargs) -> tuple:
    """('mmattn' | 'mmdet', config dict) of 'TYPE[:ARCH]' or a baseline name.

    Raises:
        ValueError: an unknown type, arch or baseline, naming the allowed values.
    """
    if spec in BASELINES:
        return 'mmdet', dict(BASELINES[spec], **kwargs)
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
    return MODELS.build(cfg)


def short_name(spec: str) -> str:
    """'BiFormer:small' -> 'BiFormer-small' for tables and plot legends."""
    return spec.replace(':', '-')
