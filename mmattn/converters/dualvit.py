"""Official Dual-ViT checkpoints (YehLi/ImageNetModel) -> mmattn ``DualViT``.

mmattn keeps the official names except the model-level semantic-init modules, which move under
``semantic_init.`` (``q`` -> ``semantic_init.query``). Classification files lose the 22 (for S)
classification-only tensors: ``head.*``, ``aux_head.*``, ``post_network.*`` and the last
stage-4 block's ``mlp.fc_proxy.*`` (the last block of the official det/seg backbone drops the
semantic tokens before its FFN). Det/seg "Pretrained/dualvit_*.pth" files are flat
classification dicts too; converted files pass through unchanged. The room (``convert.py``)
checks every key against a meta-device model of the inferred architecture. Tensors are never
modified.
"""
import re

from .common import CheckpointKeyError, summarize_keys
from .convert import register_converter

HEAD_DIM = 32  # C / heads in every stage of every official variant; heads leave no trace in the
# weights

_SEMANTIC_INIT = re.compile(r'^(?:q|(?:q_embed|kv|proxy_ln|se)\.\d*\.?(?:weight|bias))$')
_CLASSIFIER = re.compile(r'^(?:head|aux_head|post_network)\.')
_KNOWN = re.compile(r'^(?:semantic_init\.|patch_embed[1-4]\.|proxy_embed[2-4]\.|block[1-4]\.\d+\.'
                    r'|norm[1-4]\.|norm_proxy[1-3]\.)')


def _rename(key):
    if key == 'q':
        return 'semantic_init.query'
    return 'semantic_init.' + key if _SEMANTIC_INIT.match(key) else key


def _arch_of(state_dict):
    """The DualViT arch dict of an mmattn-layout state dict (for the meta-model check)."""
    try:
        stem_hidden = state_dict['patch_embed1.conv.0.weight'].shape[0]
        dims = [state_dict[f'patch_embed{i}.norm.weight'].shape[0] for i in range(1, 5)]
    except KeyError as exc:
        raise CheckpointKeyError(f'not a Dual-ViT checkpoint: {exc.args[0]} is missing') from None
    depths, ratios = [], []
    for i in range(1, 5):
        blocks = {int(k.split('.')[1]) for k in state_dict if k.startswith(f'block{i}.')}
        if not blocks:
            raise CheckpointKeyError(f'Dual-ViT checkpoint has no blocks for stage {i}')
        depths.append(max(blocks) + 1)
        fc1 = state_dict.get(f'block{i}.0.mlp.fc1.weight')
        ratios.append(fc1.shape[0] / fc1.shape[1] if fc1 is not None else 1)
    return dict(stem_hidden=stem_hidden, embed_dims=dims, depths=depths, mlp_ratios=ratios,
                num_heads=[max(c // HEAD_DIM, 1) for c in dims])


@register_converter('dualvit', model='DualViT',
                    drops="classification only: head.*, aux_head.*, post_network.*, the last "
                          "stage-4 block's mlp.fc_proxy.*")
def convert_dualvit(state_dict):
    """Check and adapt an official Dual-ViT state dict for mmattn's ``DualViT``.

    Args:
        state_dict (dict): official classification keys (with or without the head), the
            downstream backbone's keys, or mmattn's; already stripped of ``backbone.``.

    Returns:
        tuple: (mmattn state dict, ``DualViT`` kwargs of the checkpoint's architecture).

    Raises:
        CheckpointKeyError: one error listing every unknown key.
    """
    renamed = {_rename(k): v for k, v in state_dict.items()}
    unknown = sorted(k for k in renamed if not (_CLASSIFIER.match(k) or _KNOWN.match(k)))
    if unknown:
        raise CheckpointKeyError(f'not an official Dual-ViT checkpoint: {len(unknown)} unknown '
                                 'keys: ' + summarize_keys(unknown))
    converted = {k: v for k, v in renamed.items() if not _CLASSIFIER.match(k)}
    arch = _arch_of(converted)
    last = f'block4.{arch["depths"][3] - 1}.mlp.fc_proxy.'
    return {k: v for k, v in converted.items() if not k.startswith(last)}, dict(arch=arch)
