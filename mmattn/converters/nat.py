"""Official NAT / DiNAT checkpoints (SHI-Labs/Neighborhood-Attention-Transformer) -> mmattn.

mmattn's ``NAT`` / ``DiNAT`` keep the official parameter names, so this is a
checked identity mapping: the ImageNet classifier (``norm.*``, ``head.*``) is dropped, the
det/seg output norms ``norm0..3`` are added as ones/zeros for classification files (as the
official det/seg backbones start them), and every key is validated against the official key
table and then, in the room (``convert.py``), against a meta-device ``NAT`` of the inferred
architecture. Tensors are never modified. Dilations change no parameter (the rpb table's shape
does not depend on the dilation), so one converter serves both families.
"""
import re

from .common import CheckpointKeyError, rename_official_keys
from .convert import register_converter

_BLOCK = r'levels\.\d+\.blocks\.\d+\.'
_OFFICIAL_KEYS = re.compile('^(?:' + '|'.join([
    r'patch_embed\.proj\.[01]\.(?:weight|bias)',
    r'patch_embed\.norm\.(?:weight|bias)',
    _BLOCK + r'(?:norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(?:weight|bias)',
    _BLOCK + r'(?:attn\.rpb|gamma1|gamma2)',
    r'levels\.\d+\.downsample\.reduction\.weight',
    r'levels\.\d+\.downsample\.norm\.(?:weight|bias)',
    r'norm[0-3]\.(?:weight|bias)',
]) + ')$')
_CLASSIFIER = re.compile(r'^(?:norm|head)\.(?:weight|bias)$')


def _arch_of(state_dict):
    """The NAT arch dict of an official/mmattn-layout state dict (for the meta-model check)."""
    if 'patch_embed.norm.weight' not in state_dict:
        raise CheckpointKeyError('not a NAT/DiNAT checkpoint: patch_embed.norm.weight is missing')
    embed_dims = state_dict['patch_embed.norm.weight'].shape[0]
    depths, heads = [], []
    kernel_size, mlp_ratio = 7, 3.
    for level in range(4):
        prefix = f'levels.{level}.blocks.'
        blocks = {int(k[len(prefix):].split('.')[0]) for k in state_dict if k.startswith(prefix)}
        if not blocks:
            raise CheckpointKeyError(f'NAT checkpoint has no blocks for level {level}')
        depths.append(max(blocks) + 1)
        rpb = state_dict.get(f'{prefix}0.attn.rpb')
        heads.append(rpb.shape[0] if rpb is not None else 1)
        if level == 0:
            if rpb is not None:
                kernel_size = (rpb.shape[-1] + 1) // 2
            fc1 = state_dict.get(f'{prefix}0.mlp.fc1.weight')
            if fc1 is not None:
                mlp_ratio = fc1.shape[0] / fc1.shape[1]
    layer_scale = 1e-5 if 'levels.0.blocks.0.gamma1' in state_dict else None
    return dict(embed_dims=embed_dims, depths=depths, num_heads=heads, mlp_ratio=mlp_ratio,
                kernel_size=kernel_size, layer_scale=layer_scale)


def _keep_official_key(key):
    if _CLASSIFIER.match(key):
        return None  # the ImageNet classifier
    if _OFFICIAL_KEYS.match(key):
        return key
    raise KeyError(key)


@register_converter('nat', 'dinat', model='NAT', out_norms=True,
                    drops='the ImageNet classifier: norm.*, head.*')
def convert_nat(state_dict):
    """Check and adapt an official NAT / DiNAT state dict for mmattn's ``NAT`` / ``DiNAT``.

    Args:
        state_dict (dict): official keys: classification (with ``norm.*``/``head.*``) or the
            det/seg backbone (with ``norm0..3``), already stripped of ``backbone.``.

    Returns:
        tuple: (state dict, ``NAT`` kwargs of the checkpoint's architecture); the state dict
        loads with ``strict=True`` into ``NAT``/``DiNAT`` of that arch with any dilations.

    Raises:
        CheckpointKeyError: one error listing every unknown key.
    """
    converted = rename_official_keys(state_dict, _keep_official_key, 'NAT/DiNAT')
    return converted, dict(arch=_arch_of(converted))
