"""Official GroupMixFormer checkpoints (AILab-CVC/GroupMixFormer) -> mmattn ``GroupMixFormer``.

The official files are ``{'model': state_dict}`` (written by the official
``extract_clean_ckpt.py``), which mmengine's loader would not unwrap. Keys are renamed to mmattn's
names (table below), tensors are never modified, the ImageNet classifier ``norm4.*`` (a BatchNorm)
and ``head.*`` is dropped, and the room (``convert.py``) checks the result key by key and shape by
shape against a meta-device model of the inferred architecture. Files already in mmattn's names
(converted, or a detector's backbone) pass through the same check.
"""
import re

from .common import CheckpointKeyError, rename_official_keys
from .convert import register_converter

# (official regex, mmattn replacement); the block prefix is rewritten first
_BLOCK = (r'^groupmixformer_backbone\.(\d+)\.gma_stage\.(\d+)\.', r'stages.\1.blocks.\2.')
_RENAMES = tuple((re.compile(p), r) for p, r in (
    (r'^conv_stem\.proj([12])\.', r'stem.conv\1.'),
    (r'^conv_stem\.norm([12])\.', r'stem.bn\1.'),
    (r'^patch_embed_layers\.(\d+)\.proj\.conv1\.', r'stages.\1.patch_embed.conv.dw.'),
    (r'^patch_embed_layers\.(\d+)\.proj\.pointwise_conv\.', r'stages.\1.patch_embed.conv.pw.'),
    (r'^patch_embed_layers\.(\d+)\.norm\.', r'stages.\1.patch_embed.norm.'),
    (r'(\.blocks\.\d+\.)cpe\.proj\.', r'\1cpe.'),
    (r'(\.blocks\.\d+\.)att\.(qkv|proj)\.', r'\1attn.\2.'),
    (r'(\.blocks\.\d+\.)att\.aggregator\.norm([0-3])\.', r'\1attn.aggregators.\2.norm.'),
    (r'(\.blocks\.\d+\.)att\.aggregator\.agg([1-3])\.conv1\.', r'\1attn.aggregators.\2.conv.dw.'),
    (r'(\.blocks\.\d+\.)att\.aggregator\.agg([1-3])\.pointwise_conv\.',
     r'\1attn.aggregators.\2.conv.pw.'),
    # agg0 is the non-attention branch (segment s4), not the identity aggregator (norm0)
    (r'(\.blocks\.\d+\.)att\.aggregator\.agg0\.conv\.conv1\.', r'\1attn.local_branch.conv.dw.'),
    (r'(\.blocks\.\d+\.)att\.aggregator\.agg0\.conv\.pointwise_conv\.',
     r'\1attn.local_branch.conv.pw.'),
    (r'(\.blocks\.\d+\.)att\.aggregator\.agg0\.norm\.', r'\1attn.local_branch.norm.'),
    (r'(\.blocks\.\d+\.)att\.crpe\.conv_list\.([0-2])\.', r'\1attn.crpe.\2.'),
    (r'(\.blocks\.\d+\.)(norm[12]|mlp\.fc[12])\.', r'\1\2.'),
))
_CLASSIFIER = re.compile(r'^(?:norm4|head)\.')


def rename_key(key):
    """mmattn name of an official key; None for the classifier; KeyError for an unknown key."""
    if _CLASSIFIER.match(key):
        return None
    key = re.sub(_BLOCK[0], _BLOCK[1], key)
    for pattern, replacement in _RENAMES:
        new, count = pattern.subn(replacement, key)
        if count:
            return new
    raise KeyError(key)


def _arch_of(state_dict):
    """embed_dims / depths / mlp_ratios of an mmattn-layout state dict."""
    dims, depths, ratios = [], [], []
    for i in range(4):
        norm = state_dict.get(f'stages.{i}.patch_embed.norm.weight')
        prefix = f'stages.{i}.blocks.'
        blocks = {int(k[len(prefix):].split('.')[0]) for k in state_dict if k.startswith(prefix)}
        fc1 = state_dict.get(f'{prefix}0.mlp.fc1.weight')
        if norm is None or not blocks or fc1 is None:
            raise CheckpointKeyError(f'not a GroupMixFormer checkpoint: stage {i} has no patch '
                                     'embedding norm, blocks or MLP')
        dims.append(norm.shape[0])
        depths.append(max(blocks) + 1)
        ratios.append(fc1.shape[0] / fc1.shape[1])
    return dict(embed_dims=dims, depths=depths, mlp_ratios=ratios)


@register_converter('groupmixformer', model='GroupMixFormer',
                    drops='the ImageNet classifier: norm4.*, head.*')
def convert_groupmixformer(state_dict):
    """Official (or mmattn-layout) GroupMixFormer state dict -> mmattn ``GroupMixFormer``.

    Args:
        state_dict (dict): the tensors under ``model`` of an official file (``backbone.`` /
            ``module.`` prefixes already stripped by :func:`extract_state_dict`).

    Returns:
        tuple: (mmattn state dict, ``GroupMixFormer`` kwargs of the checkpoint's architecture).

    Raises:
        CheckpointKeyError: one error listing every unknown key.
    """
    converted = rename_official_keys(state_dict, rename_key, 'GroupMixFormer',
                                     mmattn_layout=r'(?:stem|stages)\.')
    return converted, dict(arch=_arch_of(converted))
