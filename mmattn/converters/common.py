"""Shared machinery of the official-checkpoint converters."""
import os
import pickle
import re
from collections.abc import Mapping

import torch

CONVERTERS = {}


class CheckpointKeyError(KeyError):
    """Converted keys do not match the mmattn model: lists every missing/unexpected key."""

    def __str__(self):  # KeyError would repr() the message and squash the newlines
        return str(self.args[0])


def register_converter(*families):

    def _register(fn):
        for family in families:
            CONVERTERS[family] = fn
        return fn

    return _register


def rename_official_keys(state_dict, rename, name):
    """Official -> mmattn keys through ``rename(key)``: a new key, None for a tensor to drop (the
    classifier), KeyError for a key that is not official.

    Returns:
        tuple: (converted dict, number of dropped tensors).

    Raises:
        CheckpointKeyError: one error listing every unknown key (``name``: the model's name).
    """
    converted, unknown, dropped = {}, [], 0
    for key, value in state_dict.items():
        try:
            new_key = rename(key)
        except KeyError:
            unknown.append(key)
            continue
        if new_key is None:
            dropped += 1
        else:
            converted[new_key] = value
    if unknown:
        raise CheckpointKeyError(f'not an official {name} checkpoint: {len(unknown)} unknown '
                                 'keys: ' + ', '.join(sorted(unknown)))
    return converted, dropped


def add_output_norms(state_dict, widths):
    """Add output norms ``norm{i}`` (weight 1, bias 0, one per stage width) in place, as the
    official det/seg backbones initialise them, when the state dict has none (a
    classification checkpoint). Returns whether they were added."""
    if any(re.match(r'^norm\d\.', k) for k in state_dict):
        return False
    for i, dim in enumerate(widths):
        state_dict[f'norm{i}.weight'] = torch.ones(dim)
        state_dict[f'norm{i}.bias'] = torch.zeros(dim)
    return True


def load_checkpoint_file(path, trusted=False):
    """Load a checkpoint file on the CPU.

    ``weights_only=True`` first (tensors, plus the mmengine allow-list of ``mmattn.compat``).
    Research releases often pickle ``argparse.Namespace``/yacs configs next to the weights;
    those load only with ``trusted=True``, an explicit opt-in for a file the user vouches for.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trusted:
            reason = str(exc).strip().splitlines()[0]
            raise RuntimeError(
                f'{path} contains pickled objects outside the weights-only allow-list ({reason}). '
                'If you trust this file (e.g. an official release), convert it once with '
                '`python tools/convert_ckpt.py FAMILY SRC DST --trusted`; the output holds tensors '
                'only and loads safely everywhere.') from exc
    # Explicit, documented trusted-file path (the user passed --trusted / trusted=True).
    return torch.load(path, map_location='cpu', weights_only=False)  # noqa: S614


def unwrap_state_dict(checkpoint):
    """The tensor dict under ``state_dict`` / ``model`` (or the dict itself), ``module.`` (DDP)
    prefixes stripped."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    state_dict = checkpoint
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            state_dict = checkpoint[key]
            break
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in state_dict.items()}


def extract_state_dict(checkpoint):
    """The tensor dict of an official classification (``model``) or det/seg (``state_dict``,
    ``backbone.`` prefix) checkpoint; ``module.`` (DDP) and ``backbone.`` prefixes stripped."""
    state_dict = unwrap_state_dict(checkpoint)
    if any(k.startswith('backbone.') for k in state_dict):  # a whole detector / segmentor
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items()
                      if k.startswith('backbone.')}
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not state_dict or not_tensors:
        raise CheckpointKeyError(
            'no weights found: expected tensors under "state_dict", "model" or at the top level'
            + (f'; non-tensor entries: {not_tensors[:10]}' if not_tensors else ''))
    return state_dict


def likely_cause(missing, unexpected, mis_shaped):
    """One phrase guessing why a checkpoint does not fit (for the error message)."""
    if mis_shaped and not missing and not unexpected:
        return 'same layers with other sizes: another variant (arch) of the same model'
    if missing and unexpected:
        return 'other parameter names: another model family, or a variant with another depth'
    if missing:
        return 'the checkpoint lacks parts of the model (a shallower variant or another model)'
    return 'the checkpoint holds layers this model does not have (a deeper or another model)'


def describe_mismatch(header, missing, unexpected, mis_shaped, shown=20):
    """``header`` then one line per kind of mismatch (first ``shown`` keys) and the likely cause.

    ``mis_shaped`` items are already formatted (``'key: checkpoint (..) vs model (..)'``).
    """
    lines = [header]
    for title, keys in (('missing', missing), ('unexpected', unexpected),
                        ('shape mismatch', mis_shaped)):
        if keys:
            more = f' ... (+{len(keys) - shown} more)' if len(keys) > shown else ''
            lines.append(f'  {title} ({len(keys)}): ' + ', '.join(keys[:shown]) + more)
    lines.append('  likely cause: ' + likely_cause(missing, unexpected, mis_shaped))
    return '\n'.join(lines)


def check_against_model(state_dict, model, source=''):
    """Raise one :class:`CheckpointKeyError` naming the missing, unexpected or mis-shaped keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = sorted(f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model '
                        f'{tuple(expected[k].shape)}' for k in set(expected) & set(state_dict)
                        if state_dict[k].shape != expected[k].shape)
    if missing or unexpected or mis_shaped:
        raise CheckpointKeyError(describe_mismatch(
            f'checkpoint{" " + source if source else ""} does not match '
            f'{type(model).__name__}:', missing, unexpected, mis_shaped))


def convert_checkpoint(family, checkpoint, **kwargs):
    """Official checkpoint (path or loaded dict) -> mmattn state dict for ``family``.

    Args:
        family (str): e.g. ``'biformer'``.
        checkpoint (str | dict): a file path or a loaded checkpoint dict.
        **kwargs: ``trusted`` (load a path with ``weights_only=False``), family options.

    Returns:
        dict[str, Tensor]: loads with ``strict=True`` into the matching mmattn backbone.
    """
    if family not in CONVERTERS:
        raise ValueError(f'no converter for {family!r}; available: {sorted(CONVERTERS)}')
    trusted = kwargs.pop('trusted', False)
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = load_checkpoint_file(os.fspath(checkpoint), trusted=trusted)
    return CONVERTERS[family](extract_state_dict(checkpoint), **kwargs)
