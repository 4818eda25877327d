"""The model of a config, checked before the Runner: built on the meta device, then the
backbone's output widths compared with what the neck and the heads were configured to take.

A neck or decode head whose ``in_channels`` does not match the backbone (another variant's
widths, a changed ``out_indices``) builds fine and fails only in the first forward, after the
whole environment and config are logged. :func:`channel_mismatch` runs the backbone (and the
neck) on a meta-device image: no memory is allocated and nothing is computed, only the output
shapes are propagated, and the widths every neck and head expects are compared with them.
"""
import copy
import importlib
import warnings

import torch

_SIZES = (256, 512)  # meta-device input sizes tried (no cost: shapes only)


def build_model(cfg_model, scope):
    """``cfg_model`` built from ``scope``'s registry on the meta device (no memory, no weight
    initialisation), or on the CPU when a constructor needs real tensors (e.g. ``.item()`` on a
    drop-path schedule). Exceptions of the build propagate."""
    models = importlib.import_module(f'{scope}.registry').MODELS
    with warnings.catch_warnings():  # the Runner's own build shows the codebases' warnings
        warnings.simplefilter('ignore')
        try:
            with torch.device('meta'):
                return models.build(copy.deepcopy(cfg_model))
        except Exception:  # noqa: BLE001 - retried with real tensors; a config error fails again
            return models.build(copy.deepcopy(cfg_model))


def _unwrap(model):
    while hasattr(model, 'module') and not hasattr(model, 'backbone'):  # TTA / DDP wrappers
        model = model.module
    return model


def _widths(outs):
    if isinstance(outs, torch.Tensor):
        outs = (outs, )
    return [int(o.shape[1]) for o in outs]


def _on_meta(module):
    """``module`` itself when its parameters are on the meta device, else a meta copy."""
    tensors = list(module.parameters()) + list(module.buffers())
    if all(t.is_meta for t in tensors):
        return module
    return copy.deepcopy(module).to('meta')


def _backbone_outputs(backbone):
    channels = getattr(backbone, 'in_channels', 3)
    channels = channels if isinstance(channels, int) else 3
    for size in _SIZES:
        try:
            with torch.no_grad():
                return backbone(torch.empty(1, channels, size, size, device='meta'))
        except Exception:  # noqa: BLE001 - a size the backbone refuses: the next one
            continue
    return None


def _fmt(values):
    return '[' + ', '.join(str(v) for v in values) + ']'


def _expected_in(head, widths):
    """What ``head.in_channels`` should be for inputs of ``widths`` (mmseg's ``in_index`` /
    ``input_transform``; mmdet's heads take every level with one width)."""
    in_index = getattr(head, 'in_index', None)
    if in_index is None:
        return widths[0] if len(set(widths)) == 1 else None
    try:
        if isinstance(in_index, (list, tuple)):
            chosen = [widths[i] for i in in_index]
            if getattr(head, 'input_transform', None) == 'resize_concat':
                return sum(chosen)
            return chosen
        return widths[in_index]
    except IndexError:
        return None


def _as_config_value(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def channel_mismatch(model):
    """One line saying which ``in_channels`` (or RoI extractor ``out_channels``) does not match
    the widths of its inputs, and the value to use; None when everything fits or the backbone
    cannot run on the meta device.

    Args:
        model (nn.Module): a detector or segmentor (TTA wrapper allowed), on any device.
    """
    model = _unwrap(model)
    backbone = getattr(model, 'backbone', None)
    if backbone is None:
        return None
    was_training = model.training
    model.eval()
    try:
        return _mismatch(model, _on_meta(backbone))
    finally:
        model.train(was_training)


def _mismatch(model, backbone):
    outs = _backbone_outputs(backbone)
    if outs is None:
        return None
    widths = _widths(outs)
    name = type(backbone).__name__
    source = f'the {name} backbone outputs {_fmt(widths)} channels'
    if getattr(backbone, 'out_indices', None) is not None:
        source += f' (out_indices {tuple(backbone.out_indices)})'
    neck = getattr(model, 'neck', None)
    if isinstance(neck, torch.nn.Module):
        configured = getattr(neck, 'in_channels', None)
        if isinstance(configured, (list, tuple)) and list(configured) != widths:
            return (f'model.neck.in_channels is {_fmt(configured)} but {source}: use '
                    f'in_channels={_fmt(widths)} in model.neck')
        if isinstance(configured, int) and len(widths) == 1 and configured != widths[0]:
            return (f'model.neck.in_channels is {configured} but {source}: use '
                    f'in_channels={widths[0]} in model.neck')
        try:
            with torch.no_grad():
                outs = _on_meta(neck)(outs)
        except Exception:  # noqa: BLE001 - a neck that cannot run on meta: heads unchecked
            return None
        widths = _widths(outs)
        source = f'the neck ({type(neck).__name__}) outputs {_fmt(widths)} channels'
    for key in ('decode_head', 'auxiliary_head', 'rpn_head', 'bbox_head'):
        heads = getattr(model, key, None)
        if heads is None:
            continue
        many = isinstance(heads, torch.nn.ModuleList)
        for index, head in enumerate(heads if many else [heads]):
            configured = getattr(head, 'in_channels', None)
            expected = _expected_in(head, widths)
            if configured is None or expected is None:
                continue
            if _as_config_value(configured) != _as_config_value(expected):
                where = f'model.{key}' + (f'[{index}]' if many else '')
                used = f' (in_index {head.in_index})' if getattr(head, 'in_index', None) \
                    is not None else ''
                shown = _fmt(configured) if isinstance(configured, (list, tuple)) else configured
                wanted = _fmt(expected) if isinstance(expected, list) else expected
                return (f'{where}.in_channels is {shown} but {source}{used}: use '
                        f'in_channels={wanted} in {where}')
    roi_head = getattr(model, 'roi_head', None)
    if roi_head is not None and len(set(widths)) == 1:
        for key in ('bbox_roi_extractor', 'mask_roi_extractor'):
            extractor = getattr(roi_head, key, None)
            configured = getattr(extractor, 'out_channels', None)
            if isinstance(configured, int) and configured != widths[0]:
                return (f'model.roi_head.{key}.out_channels is {configured} but {source}: use '
                        f'out_channels={widths[0]} in model.roi_head.{key}')
    return None
