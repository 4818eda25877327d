"""Reading a checkpoint file: the format checks and the weights-only load.

A file is checked before torch reads it (an empty, truncated or non-PyTorch file fails with one
line naming it), then loaded with ``weights_only=True``; only an explicit ``trusted=True`` (the
``--trusted`` option of ``tools/convert_ckpt.py``) unpickles anything else.
"""
import os
import pickle
import pickletools
import zipfile

import torch


class CheckpointFileError(RuntimeError):
    """The file is not a readable PyTorch checkpoint (empty, truncated, other content)."""


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
