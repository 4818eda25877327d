"""Refuse a checkpoint that does not fit the model before the Runner silently half-loads it.

mmengine loads ``load_from`` and the checkpoint of ``tools/test.py`` with ``strict=False``: a
file of another backbone family or variant only produces a warning and a run that trains or
evaluates a randomly initialised backbone. ``tools/train.py`` and ``tools/test.py`` call
:func:`check_checkpoint_or_exit` after building the Runner; it loads the file weights-only
(mmattn's allow-list: a pickle that carries code is refused) and compares key names and shapes.
"""
from .common import describe_mismatch, unwrap_state_dict
from .convert import CONVERTERS, convert_state_dict
from .files import load_checkpoint_file

_SHOWN = 8  # keys listed per kind of mismatch


def _unwrap(model):
    while hasattr(model, 'module'):  # DDP / TTA wrappers
        model = model.module
    return model


def _official_backbone_family(state, backbone):
    """The converter family this backbone-only (official) file converts with, if any."""
    family = getattr(backbone, 'family', None)
    if family not in CONVERTERS:
        return None
    try:
        converted = convert_state_dict(family, state)
    except Exception:  # noqa: BLE001 - any converter failure means "not this family's layout"
        return None
    own = backbone.state_dict()
    fits = [k for k in converted if k in own and own[k].shape == converted[k].shape]
    return family if len(fits) >= 0.9 * len(own) else None


def checkpoint_mismatch(model, path, purpose='test'):
    """A multi-line message when ``path`` does not fit ``model``, else ``None``.

    Args:
        model (nn.Module): the detector / segmentor (DDP or TTA wrappers allowed).
        path (str): checkpoint file.
        purpose (str): ``'test'`` (every model key must load with the right shape) or
            ``'load_from'`` (fine-tuning: the backbone must match; head keys may differ, e.g. a
            different number of classes, as mmengine allows).
    """
    model = _unwrap(model)
    state = unwrap_state_dict(load_checkpoint_file(path))
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mis_shaped = sorted(k for k in own if k in state and hasattr(state[k], 'shape')
                        and tuple(state[k].shape) != tuple(own[k].shape))
    if purpose == 'load_from':
        missing = [k for k in missing if k.startswith('backbone.')]
        mis_shaped = [k for k in mis_shaped if k.startswith('backbone.')]
        unexpected = [k for k in unexpected if k.startswith('backbone.')] if missing else []
    if not (missing or mis_shaped):
        return None

    backbone = getattr(model, 'backbone', None)
    if backbone is not None and not any(k.startswith('backbone.') for k in state):
        family = _official_backbone_family(state, backbone)
        if family is not None:
            return (f'{path} is an official {family} backbone checkpoint, not a '
                    f'{type(model).__name__} checkpoint. Convert it once with\n'
                    f'  python tools/convert_ckpt.py {family} {path} OUT.pth\n'
                    "and use it as model.backbone.init_cfg=dict(type='Pretrained', "
                    "checkpoint='OUT.pth') to initialise the backbone")
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
              for k in mis_shaped]
    return describe_mismatch(
        f'{path} does not match the {type(model).__name__} of this config '
        f'({len(own) - len(missing) - len(mis_shaped)}/{len(own)} tensors fit):',
        missing, unexpected, shapes, shown=_SHOWN)


def check_checkpoint_or_exit(model, path, purpose, tool):
    """:func:`checkpoint_mismatch` as a ``SystemExit`` with the tool's name (no traceback)."""
    try:
        message = checkpoint_mismatch(model, path, purpose)
    except RuntimeError as exc:  # weights-only refusal: a pickle with code or foreign objects
        raise SystemExit(f'tools/{tool}.py: {exc}') from exc
    if message:
        raise SystemExit(f'tools/{tool}.py: {message}')
