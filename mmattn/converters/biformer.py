"""Official BiFormer checkpoints (rayleizhu/BiFormer) -> mmattn ``BiFormer`` state dicts.

Accepts the ImageNet release (``{'model': ...}``, with the classifier ``norm``/``head``) and the
det/seg wrapper layout (``extra_norms``, ``backbone.`` prefix inside ``state_dict``). Tensors are
renamed, never modified; the result is checked key by key and shape by shape against the model.
"""
import re

import torch
from mmengine.logging import print_log

from .common import (CheckpointKeyError, add_output_norms, check_against_model,
                     register_converter, rename_official_keys)

# official block-relative name (models/biformer.py; the det/seg wrappers add extra_norms) ->
# mmattn name
_BLOCK_RENAMES = (
    ('pos_embed.', 'pos_conv.'),
    ('attn.qkv.qkv.', 'attn.qkv.'),  # BRA fused [q | k | v]
    ('attn.wo.', 'attn.proj.'),
    ('mlp.0.', 'ffn.layers.0.0.'),
    ('mlp.3.', 'ffn.layers.1.'),
    ('norm1.', 'norm1.'),
    ('norm2.', 'norm2.'),
    ('attn.lepe.', 'attn.lepe.'),
    ('attn.qkv.weight', 'attn.qkv.weight'),  # stage 4: bias-free qkv
    ('attn.proj.', 'attn.proj.'),
)
_STEM = {'0': 'conv1', '1': 'bn1', '3': 'conv2', '4': 'bn2'}
_CLASSIFIER = re.compile(r'^(norm|head)\.')


def _rename(key):
    """mmattn name of an official key; None for the classifier parts; KeyError if unknown."""
    if _CLASSIFIER.match(key):
        return None
    m = re.match(r'^downsample_layers\.0\.(\d)\.(.+)$', key)
    if m and m.group(1) in _STEM:
        return f'stem.{_STEM[m.group(1)]}.{m.group(2)}'
    m = re.match(r'^downsample_layers\.([123])\.([01])\.(.+)$', key)
    if m:
        return f'stages.{m.group(1)}.downsample.{("conv", "bn")[int(m.group(2))]}.{m.group(3)}'
    m = re.match(r'^extra_norms\.(\d)\.(.+)$', key)
    if m:
        return f'norm{m.group(1)}.{m.group(2)}'
    m = re.match(r'^stages\.(\d)\.(\d+)\.(.+)$', key)
    if m:
        for old, new in _BLOCK_RENAMES:
            if m.group(3).startswith(old):
                return f'stages.{m.group(1)}.blocks.{m.group(2)}.{new}{m.group(3)[len(old):]}'
    raise KeyError(key)


def _arch_of(state_dict):
    """Architecture of an mmattn-layout state dict, for building the model to check against."""
    dims, depths, mlp_ratios, topks = [], [], [], []
    for stage in range(4):
        prefix = f'stages.{stage}.blocks.'
        blocks = {int(k[len(prefix):].split('.')[0]) for k in state_dict if k.startswith(prefix)}
        if not blocks:
            raise CheckpointKeyError(f'checkpoint has no blocks for stage {stage}')
        dim = state_dict[f'{prefix}0.norm1.weight'].shape[0]
        dims.append(dim)
        depths.append(max(blocks) + 1)
        mlp_ratios.append(state_dict[f'{prefix}0.ffn.layers.0.0.weight'].shape[0] / dim)
        topks.append(1 if f'{prefix}0.attn.qkv.bias' in state_dict else -2)
    # head counts, n_win and topk values change no parameter shape
    arch = dict(embed_dims=dims, depths=depths, head_dim=1, mlp_ratio=mlp_ratios[0])
    return arch, topks


@register_converter('biformer')
def convert_biformer(state_dict, add_out_norms=True):
    """Rename an official BiFormer state dict to mmattn's ``BiFormer``.

    Args:
        state_dict (dict): official keys (classification or det/seg), or mmattn keys.
        add_out_norms (bool): classification checkpoints have no output norms; add them as the
            official det/seg wrapper initialises them (weight 1, bias 0). Default: True.

    Returns:
        dict: mmattn keys; loads with ``strict=True`` into ``BiFormer`` (all 4 out_indices).
    """
    from mmattn.models.backbones.biformer import BiFormer

    if any(k.startswith('stem.') for k in state_dict):  # already mmattn layout
        converted = dict(state_dict)
    else:
        converted, dropped = rename_official_keys(state_dict, _rename, 'BiFormer')
        if dropped:
            print_log(f'biformer converter: dropped the ImageNet classifier ({dropped} '
                      'tensors: norm.*, head.*)', logger='current')
    arch, topks = _arch_of(converted)
    if add_out_norms and add_output_norms(converted, arch['embed_dims']):
        print_log('biformer converter: classification checkpoint, output norms norm0..3 '
                  'initialised to weight 1 / bias 0 as the official det/seg wrapper does',
                  logger='current')
    with torch.device('meta'):
        model = BiFormer(arch=arch, topks=topks, n_win=1, global_heads=1)
    check_against_model(converted, model, '(biformer)')
    return converted
