"""Shared machinery of the official-checkpoint converters."""
import os
import pickle
import pickletools
import re
import zipfile
from collections import Counter
from collections.abc import Mapping

import torch

CONVERTERS = {}


class CheckpointFileError(RuntimeError):
    """The file is not a readable PyTorch checkpoint (empty, truncated, other content)."""


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
                                 'keys: ' + summarize_keys(sorted(unknown)))
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


def checkpoint_file_problem(path):
    """Why ``path`` cannot be a PyTorch checkpoint (a short phrase), or None when it may be one.

    Cheap: reads the first bytes and, for the zip format of ``torch.save``, the archive's
    central directory (at the end of the file, so a truncated file has none).
    """
    size = os.path.getsize(path)
    if size == 0:
        return 'not a PyTorch checkpoint (empty file, 0 bytes)'
    with open(path, 'rb') as f:
        head = f.read(2)
    if head == b'PK':
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return f'truncated PyTorch checkpoint ({size} bytes; the zip archive is incomplete)'
        if not any(name.endswith('data.pkl') for name in names):
            return 'not a PyTorch checkpoint (a zip archive without data.pkl)'
        return None
    if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return None  # legacy (pre-1.6) torch.save or plain pickle: torch.load decides
    return f'not a PyTorch checkpoint ({size} bytes of other content)'


def check_checkpoint_file(path):
    """Raise :class:`CheckpointFileError` (one line naming ``path``) for an unreadable file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    problem = checkpoint_file_problem(path)
    if problem:
        raise CheckpointFileError(f'{path}: {problem}')


def _is_allowlist_refusal(exc, path):
    """torch's weights-only unpickler refusing a pickle (a global: code or a foreign class; an
    opcode it does not support), as opposed to bytes that are not a pickle at all. The first
    pickle of the file is parsed with ``pickletools`` (which executes nothing)."""
    if 'global' in str(exc).lower():
        return True
    try:
        with open(path, 'rb') as f:
            for _ in pickletools.genops(f):
                pass
    except Exception:  # noqa: BLE001 - any parse failure: not a pickle
        return False
    return True


def load_checkpoint_file(path, trusted=False):
    """Load a checkpoint file on the CPU.

    ``weights_only=True`` first (tensors, plus the mmengine allow-list of ``mmattn.compat``).
    Research releases often pickle ``argparse.Namespace``/yacs configs next to the weights;
    those load only with ``trusted=True``, an explicit opt-in for a file the user vouches for.
    An empty, truncated or non-PyTorch file raises :class:`CheckpointFileError` naming it.
    """
    check_checkpoint_file(path)
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _is_allowlist_refusal(exc, path):
            raise CheckpointFileError(f'{path}: not a PyTorch checkpoint (unreadable pickle '
                                      'stream)') from exc
        if not trusted:
            reason = str(exc).strip().splitlines()[0]
            raise RuntimeError(
                f'{path} contains pickled objects outside the weights-only allow-list ({reason}). '
                'If you trust this file (e.g. an official release), convert it once with '
                '`python tools/convert_ckpt.py FAMILY SRC DST --trusted`; the output holds tensors '
                'only and loads safely everywhere.') from exc
    except (RuntimeError, EOFError, ValueError, IndexError) as exc:
        text = str(exc)
        if isinstance(exc, RuntimeError) and 'PytorchStreamReader' not in text:
            raise  # not a file-format problem (e.g. the allow-list's own refusals)
        raise CheckpointFileError(f'{path}: truncated or corrupt PyTorch checkpoint '
                                  f'({text.splitlines()[0][:120] if text else type(exc).__name__})'
                                  ) from exc
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
