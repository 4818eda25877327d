"""Op-level benchmark cases, one module per family, run by ``benchmark.py --ops FAMILY``.

Contract: each ``<family>.py`` defines ``cases(device='cpu', quick=False) -> list[dict]``, each
dict with ``op`` (str), ``impl`` (str), ``size`` (str label) and ``build`` (zero-argument
callable returning ``(fn, inputs)``; ``fn(*inputs)`` returns a tensor, inputs that need
gradients have ``requires_grad`` set). For each (op, size) the first impl is mmattn's fast path;
the others (naive anchors, official formulations) are reported as ratios to it. ``quick=True``
gives tiny sizes (tests, smoke runs).
"""
import importlib
import os.path as osp
import pkgutil


def families() -> list:
    """Names of the case modules in this folder."""
    return sorted(m.name for m in pkgutil.iter_modules([osp.dirname(__file__)]))


def load_cases(family: str, device: str = 'cpu', quick: bool = False) -> list:
    """The cases of ``family`` (module name, e.g. 'routing'), checked against the contract.

    Raises:
        ValueError: unknown family, naming the available ones, or a case missing a key.
    """
    if family not in families():
        raise ValueError(f'unknown --ops family {family!r}; choose from {families()}')
    cases = importlib.import_module(f'{__name__}.{family}').cases(device=device, quick=quick)
    for case in cases:
        missing = {'op', 'impl', 'size', 'build'} - set(case)
        if missing:
            raise ValueError(f'op_bench/{family}.py: a case lacks {sorted(missing)}: {case}')
    return cases
