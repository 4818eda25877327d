"""Official BiFormer checkpoints (rayleizhu/BiFormer) -> mmattn ``BiFormer`` state dicts.

Accepts the ImageNet release (``{'model': ...}``, with the classifier ``norm``/``head``) and the
det/seg wrapper layout (``extra_norms``, ``backbone.`` prefix inside ``state_dict``). Tensors are
renamed, never modified; the room (``convert.py``) checks the result key by key and shape by
shape against a ``BiFormer`` of the architecture the shapes imply.
"""
import re

from .common import CheckpointKeyError, rename_official_keys
from .convert import register_converter

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
    arch = dict(embed_dims=dims, depths=depths, head_dim=1, mlp_ratio=mlp_ratios[0])
    return arch, topks


@register_converter('biformer', model='BiFormer', out_norms=True,
                    drops='the ImageNet classifier: norm.*, head.*')
def convert_biformer(state_dict):
    """Rename an official BiFormer state dict to mmattn's ``BiFormer``.

    Args:
        state_dict (dict): official keys (classification or det/seg), or mmattn keys.

    Returns:
        tuple: (mmattn state dict, ``BiFormer`` kwargs of the checkpoint's architecture).
    """
    converted = rename_official_keys(state_dict, _rename, 'BiFormer', mmattn_layout=r'stem\.')
    arch, topks = _arch_of(converted)
    # head counts, n_win and topk values change no parameter shape
    return converted, dict(arch=arch, topks=topks, n_win=1, global_heads=1)
