"""State dicts of checkpoints: unwrapping, renaming, and checking keys against a model."""
import re
from collections import Counter
from collections.abc import Mapping

import torch


class CheckpointKeyError(KeyError):
    """Converted keys do not match the mmattn model: lists every missing/unexpected key."""

    def __str__(self):  # KeyError would repr() the message and squash the newlines
        return str(self.args[0])


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


def extract_state_dict(checkpoint, prefix=None, source='the checkpoint'):
    """The tensor dict of a checkpoint, unwrapped once for every caller.

    Official classification files hold it under ``model``, mmengine / det / seg files under
    ``state_dict``; ``module.`` (DDP) prefixes are stripped. Then only the keys under ``prefix``
    (e.g. ``'backbone.'``) are kept, without it; with no ``prefix``, a whole detector /
    segmentor's ``backbone.`` keys are.

    Args:
        checkpoint (dict): a loaded checkpoint.
        prefix (str, optional): take the keys under this prefix only.
        source (str): what the errors call the checkpoint (its path).

    Raises:
        KeyError: no key starts with ``prefix``.
        CheckpointKeyError: no tensors, or entries that are not tensors.
    """
    state_dict = unwrap_state_dict(checkpoint)
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not state_dict:
            raise KeyError(f'no key of {source} starts with prefix {prefix!r}')
    elif any(k.startswith('backbone.') for k in state_dict):  # a whole detector / segmentor
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items()
                      if k.startswith('backbone.')}
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not state_dict or not_tensors:
        raise CheckpointKeyError(
            f'no weights found in {source}: expected tensors under "state_dict", "model" or at '
            'the top level'
            + (f'; non-tensor entries: {not_tensors[:10]}' if not_tensors else ''))
    return state_dict


def rename_official_keys(state_dict, rename, name, mmattn_layout=None):
    """Official -> mmattn keys through ``rename(key)``: a new key, None for a tensor to drop (the
    classifier), KeyError for a key that is not official.

    Args:
        state_dict (dict): official keys, or mmattn's.
        rename (callable): the family's renaming table as a function of one key.
        name (str): the model's name, for the error.
        mmattn_layout (str, optional): regex of keys only mmattn's layout has: a state dict with
            one of them (a converted file, a detector's backbone) is returned as it is.

    Returns:
        dict: the converted state dict (a new dict).

    Raises:
        CheckpointKeyError: one error listing every unknown key.
    """
    if mmattn_layout and any(re.match(mmattn_layout, k) for k in state_dict):
        return dict(state_dict)
    converted, unknown = {}, []
    for key, value in state_dict.items():
        try:
            new_key = rename(key)
        except KeyError:
            unknown.append(key)
            continue
        if new_key is not None:
            converted[new_key] = value
    if unknown:
        raise CheckpointKeyError(f'not an official {name} checkpoint: {len(unknown)} unknown '
                                 'keys: ' + summarize_keys(sorted(unknown)))
    return converted


def likely_cause(missing, unexpected, mis_shaped):
    """One phrase guessing why a checkpoint does not fit (for the error message)."""
    if mis_shaped and not missing and not unexpected:
        return 'same layers with other sizes: another variant (arch) of the same model'
    if missing and unexpected:
        return 'other parameter names: another model family, or a variant with another depth'
    if missing:
        return 'the checkpoint lacks parts of the model (a shallower variant or another model)'
    return 'the checkpoint holds layers this model does not have (a deeper or another model)'


def _key_prefix(key, depth=2):
    parts = key.split(':')[0].split('.')
    return '.'.join(parts[:depth]) if len(parts) > depth else parts[0]


def summarize_keys(keys, shown=20):
    """The first ``shown`` keys, then the rest as counts per prefix (``'+393 more: 120 under
    levels.0, ...'``): a readable line however many keys there are."""
    keys = list(keys)
    text = ', '.join(keys[:shown])
    rest = keys[shown:]
    if rest:
        counts = Counter(_key_prefix(k) for k in rest).most_common()
        listed = ', '.join(f'{n} under {prefix}' for prefix, n in counts[:8])
        others = sum(n for _, n in counts[8:])
        text += f' ... (+{len(rest)} more: {listed}' + (f', {others} elsewhere' if others else '') \
            + ')'
    return text


def describe_mismatch(header, missing, unexpected, mis_shaped, shown=20):
    """``header`` then one line per kind of mismatch (first ``shown`` keys, then counts per
    prefix) and the likely cause.

    ``mis_shaped`` items are already formatted (``'key: checkpoint (..) vs model (..)'``).
    """
    lines = [header]
    for title, keys in (('missing', missing), ('unexpected', unexpected),
                        ('shape mismatch', mis_shaped)):
        if keys:
            lines.append(f'  {title} ({len(keys)}): ' + summarize_keys(keys, shown))
    lines.append('  likely cause: ' + likely_cause(missing, unexpected, mis_shaped))
    return '\n'.join(lines)


def check_against_model(state_dict, model, source='', expected=None):
    """Raise one :class:`CheckpointKeyError` naming the missing, unexpected or mis-shaped keys
    (``expected``: the model's state dict, or the part of it the checkpoint must provide)."""
    expected = model.state_dict() if expected is None else expected
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = sorted(f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model '
                        f'{tuple(expected[k].shape)}' for k in set(expected) & set(state_dict)
                        if state_dict[k].shape != expected[k].shape)
    if missing or unexpected or mis_shaped:
        raise CheckpointKeyError(describe_mismatch(
            f'checkpoint{" " + source if source else ""} does not match '
            f'{type(model).__name__}:', missing, unexpected, mis_shaped))
