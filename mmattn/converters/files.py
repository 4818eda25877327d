"""Reading a checkpoint file: the integrity checks and the weights-only load.

Every checkpoint mmattn reads is checked by :func:`checkpoint_file_problem` before torch reads
it: ``--resume`` (with its fallback), ``load_from``, ``tools/test.py``, ``init_cfg=Pretrained``,
``tools/convert_ckpt.py``, and mmengine's own local loader, which ``import mmattn`` routes through
:func:`check_checkpoint_file` (``mmattn.engine.checkpoint``). An empty, truncated, damaged or
non-PyTorch file fails with one line naming it. The file is then loaded with
``weights_only=True``; only an explicit ``trusted=True`` (the ``--trusted`` option of
``tools/convert_ckpt.py``) unpickles anything else.

What is verified:

* zip format (``torch.save`` since torch 1.6, every mmengine checkpoint): the archive's central
  directory, then every record's local header and CRC-32 (``torch.save`` stores the records
  uncompressed with their CRC-32). Bytes overwritten in place (same size) are caught; torch
  itself does not check the CRCs and would load the changed tensors. Records written with
  ``torch.serialization.set_crc32_options(False)`` carry a CRC of 0 and are not verifiable.
* legacy format (pre-1.6 ``torch.save`` or a plain pickle): no checksum exists, so only the
  pickle header is checked, and a stream that fails to unpickle is reported in one line; bytes
  changed inside its tensor data cannot be detected.
"""
import os
import pickle
import pickletools
import re
import warnings
import zipfile
import zlib

import torch


class CheckpointFileError(RuntimeError):
    """The file is not an intact PyTorch checkpoint (empty, truncated, damaged, other content)."""


_CHUNK = 1 << 20
_VERIFIED = {}  # file state (path, inode, size, mtime, ctime) -> problem or None
_VERIFIED_MAX = 64


def _zip_record_damage(archive):
    """The first record of a zip checkpoint whose header or CRC-32 is wrong, as a phrase, or
    None. Reads every record once (0.4 s for a 537 MB file, measured on a 2-core Xeon VM,
    CPU, 2026-12, file in the page cache)."""
    for info in archive.infolist():
        if info.CRC == 0 and info.file_size:
            continue  # saved with torch.serialization.set_crc32_options(False): no CRC to check
        try:
            with archive.open(info) as record:
                while record.read(_CHUNK):
                    pass
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                NotImplementedError) as exc:
            text = str(exc).strip()
            if 'CRC' in text:
                return (f'CRC-32 mismatch in record {info.filename}: its bytes changed after '
                        'the file was written')
            reason = text.splitlines()[0][:80] if text else type(exc).__name__
            return f'damaged record {info.filename} ({reason})'
    return None


def _zip_problem(path, size):
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(name.endswith('data.pkl') for name in names):
                return 'not a PyTorch checkpoint (a zip archive without data.pkl)'
            damage = _zip_record_damage(archive)
    except (zipfile.BadZipFile, OSError, ValueError):
        return f'truncated PyTorch checkpoint ({size} bytes; the zip archive is incomplete)'
    return f'corrupt PyTorch checkpoint ({size} bytes; {damage})' if damage else None


def checkpoint_file_problem(path):
    """Why ``path`` cannot be loaded as an intact PyTorch checkpoint (a short phrase), or None.

    For the zip format of ``torch.save`` the archive's central directory (at the end of the
    file, so a truncated file has none) and the CRC-32 of every record are checked; a legacy
    file has no checksum and only its pickle header is checked (see the module doc). The answer
    is remembered per file state (inode, size, modification and change times), so the several
    readers of one run verify a file once.
    """
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns,
           stat.st_ctime_ns)
    if key not in _VERIFIED:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[key] = _file_problem(path, stat.st_size)
    return _VERIFIED[key]


def _file_problem(path, size):
    if size == 0:
        return 'not a PyTorch checkpoint (empty file, 0 bytes)'
    with open(path, 'rb') as f:
        head = f.read(2)
    if head == b'PK':
        return _zip_problem(path, size)
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


_STRING_OPS = frozenset({'SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8', 'UNICODE',
                         'SHORT_BINSTRING', 'BINSTRING', 'STRING'})
_MEMO_GETS = frozenset({'GET', 'BINGET', 'LONG_BINGET'})


def _pickle_stream(path):
    """The object pickle of a checkpoint as bytes: ``data.pkl`` of the zip format, or the whole
    file (the legacy format's pickles follow one another)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith('data.pkl'))
            return archive.read(name)
    with open(path, 'rb') as f:
        return f.read()


def pickle_globals(path):
    """The ``module.name`` of every global (class or function) the checkpoint's pickles
    reference, in order of appearance, read with ``pickletools`` (nothing is executed)."""
    import io
    stream = io.BytesIO(_pickle_stream(path))
    found = []
    while True:
        strings, memo = [], {}
        try:
            for opcode, arg, _ in pickletools.genops(stream):
                name = opcode.name
                if name in _STRING_OPS:
                    strings.append(arg if isinstance(arg, str) else str(arg))
                elif name in ('MEMOIZE', 'PUT', 'BINPUT', 'LONG_BINPUT'):
                    index = len(memo) if name == 'MEMOIZE' else arg
                    memo[index] = strings[-1] if strings else None
                elif name in _MEMO_GETS and isinstance(memo.get(arg), str):
                    strings.append(memo[arg])
                elif name == 'GLOBAL':
                    found.append(str(arg).replace(' ', '.'))
                elif name == 'STACK_GLOBAL' and len(strings) >= 2:
                    found.append(f'{strings[-2]}.{strings[-1]}')
        except Exception:  # noqa: BLE001 - the end of the pickles (raw tensor bytes follow)
            break
        if stream.tell() >= len(stream.getvalue()):
            break
    return list(dict.fromkeys(found))


def _allowed_global_names():
    """Names torch's weights-only unpickler accepts (its defaults and the added safe globals)."""
    names = set()
    try:
        from torch import _weights_only_unpickler
        names.update(_weights_only_unpickler._get_allowed_globals())
    except Exception:  # noqa: BLE001 - a torch without this private helper: name every global
        pass
    for entry in torch.serialization.get_safe_globals():
        if isinstance(entry, tuple):
            names.add(entry[1])
        else:
            names.add(f'{getattr(entry, "__module__", "")}.{getattr(entry, "__qualname__", "")}')
    return names


def refused_globals(path, exc=None):
    """The globals of ``path`` that the weights-only unpickler refuses (at most 3 named), as a
    short phrase; the refusal message of torch when none is found by name."""
    try:
        allowed = _allowed_global_names()
        names = [n for n in pickle_globals(path) if n not in allowed]
    except Exception:  # noqa: BLE001 - unreadable stream: torch's own reason below
        names = []
    if names:
        more = f' and {len(names) - 3} more' if len(names) > 3 else ''
        return ', '.join(names[:3]) + more
    text = str(exc or '')
    match = re.search(r'GLOBAL ([\w.]+)', text) or re.search(r'WeightsUnpickler error: \s*(.+)',
                                                              text)
    return match.group(1).strip()[:80] if match else 'objects of other types'


def load_checkpoint_file(path, trusted=False):
    """Load a checkpoint file on the CPU.

    ``weights_only=True`` first (tensors, plus the mmengine allow-list of ``mmattn.compat``).
    Research releases often pickle ``argparse.Namespace``/yacs configs next to the weights;
    those load only with ``trusted=True``, an explicit opt-in for a file the user vouches for.
    An empty, truncated or non-PyTorch file raises :class:`CheckpointFileError` naming it.
    """
    check_checkpoint_file(path)
    try:
        with warnings.catch_warnings():  # torch's note on protocols > 2: the error says more
            warnings.filterwarnings('ignore', message='Detected pickle protocol',
                                    category=UserWarning)
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _is_allowlist_refusal(exc, path):
            raise CheckpointFileError(f'{path}: not a PyTorch checkpoint (unreadable pickle '
                                      'stream)') from exc
        if not trusted:
            raise RuntimeError(
                f'{path} contains pickled objects outside the weights-only allow-list '
                f'({refused_globals(path, exc)}); if you trust the file, convert it once with '
                '`python tools/convert_ckpt.py FAMILY SRC DST --trusted` (tensors only)') from exc
    except (RuntimeError, EOFError, ValueError, IndexError) as exc:
        text = str(exc)
        if isinstance(exc, RuntimeError) and 'PytorchStreamReader' not in text:
            raise  # not a file-format problem (e.g. the allow-list's own refusals)
        raise CheckpointFileError(f'{path}: truncated or corrupt PyTorch checkpoint '
                                  f'({text.splitlines()[0][:120] if text else type(exc).__name__})'
                                  ) from exc
    # Explicit, documented trusted-file path (the user passed --trusted / trusted=True).
    return torch.load(path, map_location='cpu', weights_only=False)  # noqa: S614
