"""Loading pretrained weights into mmattn backbones (official or mmattn layout)."""
import pickle

from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader


def load_pretrained(model, family, checkpoint, prefix=None):
    """``init_cfg=dict(type='Pretrained')`` for mmattn backbones.

    Unlike mmengine's loader, it also finds weights under ``model`` (official releases), strips
    ``backbone.``/``module.``, converts official key names and fails with one error listing any
    key that does not match, instead of a warning and a silently random backbone.
    """
    from mmattn.converters import convert_checkpoint
    from mmattn.converters.common import unwrap_state_dict

    try:
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    except pickle.UnpicklingError as exc:
        raise RuntimeError(
            f'{checkpoint} holds pickled objects outside the weights-only allow-list. If you trust '
            f'it, convert it once: python tools/convert_ckpt.py {family} {checkpoint} OUT.pth '
            '--trusted') from exc
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = unwrap_state_dict(ckpt)
        ckpt = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not ckpt:
            raise KeyError(f'no key of {checkpoint} starts with prefix {prefix!r}')
    state_dict = convert_checkpoint(family, ckpt)
    own = model.state_dict()
    # Output norms of stages not in out_indices do not exist in the model: drop them only.
    skipped = [k for k in state_dict if k not in own and k.split('.')[0].startswith('norm')]
    for key in skipped:
        state_dict.pop(key)
    model.load_state_dict(state_dict, strict=True)
    print_log(f'{type(model).__name__}: loaded {len(state_dict)} tensors from {checkpoint}'
              + (f' (unused output norms: {len(skipped)})' if skipped else ''), logger='current')
