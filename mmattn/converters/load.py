"""``init_cfg=dict(type='Pretrained')`` of the mmattn backbones: read, convert, check, load."""
import os.path as osp
import pickle
import re

from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from .common import check_against_model, extract_state_dict
from .convert import convert_state_dict
from .files import check_checkpoint_file


def load_pretrained(model, family, checkpoint, prefix=None, ignore=None, convert=None):
    """``init_cfg=dict(type='Pretrained')`` for mmattn backbones.

    Unlike mmengine's loader, it also finds weights under ``model`` (official releases), strips
    ``backbone.``/``module.``, converts official key names and fails with one error listing any
    key that does not match (the first keys, then counts per prefix), instead of a warning and
    a silently random backbone. An empty, truncated or non-PyTorch local file fails with one
    line naming it.

    Args:
        model (nn.Module): the backbone.
        family (str | None): converter family; None: the file holds this model's own keys.
        checkpoint (str): path or URL.
        prefix (str, optional): take the keys under this prefix (e.g. ``'backbone.'``).
        ignore (str, optional): regex of keys that may be missing / unexpected on both sides
            (weights a documented conversion cannot provide); they keep their initialisation.
        convert (callable, optional): applied to the state dict instead of a converter.
    """
    if '://' not in str(checkpoint) or osp.exists(str(checkpoint)):
        check_checkpoint_file(str(checkpoint))
    try:
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    except pickle.UnpicklingError as exc:
        raise RuntimeError(
            f'{checkpoint} holds pickled objects outside the weights-only allow-list. If you trust '
            f'it, convert it once: python tools/convert_ckpt.py {family} {checkpoint} OUT.pth '
            '--trusted') from exc
    state_dict = extract_state_dict(ckpt, prefix=prefix, source=str(checkpoint))
    if convert is not None:
        state_dict = convert(state_dict)
    elif family is not None:
        state_dict = convert_state_dict(family, state_dict)
    own = model.state_dict()
    # Output norms of stages not in out_indices, and all of them with out_norms=False, do not
    # exist in the model: these surplus keys (counted in the log line below) and those matching
    # ``ignore`` are dropped; any other surplus key is an error.
    surplus = [k for k in state_dict if k not in own]
    unused_norms = [k for k in surplus if k.split('.')[0].startswith('norm')]
    ignored = [k for k in surplus
               if ignore and k not in unused_norms and re.search(ignore, k)]
    for key in unused_norms + ignored:
        state_dict.pop(key)
    kept = [k for k in own if k not in state_dict and ignore and re.search(ignore, k)]
    reference = {k: v for k, v in own.items() if k not in kept}
    check_against_model(state_dict, model, str(checkpoint), expected=reference)
    model.load_state_dict(state_dict, strict=not kept)
    print_log(f'{type(model).__name__}: loaded {len(state_dict)} tensors from {checkpoint}'
              + (f' (unused output norms: {len(unused_norms)} tensors of norm* layers the model '
                 'does not build: stages outside out_indices, or out_norms=False)'
                 if unused_norms else '')
              + (f' ({len(kept)} tensors keep their initialisation, {len(ignored)} checkpoint '
                 'tensors unused)' if kept or ignored else ''),
              logger='current')
