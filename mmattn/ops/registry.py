"""The op registry: every op file declares itself once, at its end, with :func:`register_op`.

A declaration (:class:`OpSpec`) names

- the functional ops of the file and, for each, its reference (written straight from the
  definition, with the functional op's parameters; it may add ``return_weights``);
- the MAC formulas of the functional ops whose fast path runs other work than the definition
  (``tools/analysis/get_flops.py`` counts the definition through them);
- the module that holds what the analysis tools read of the op (its ``bench_cases`` and
  ``ATTENTION_PANELS``, see :class:`OpSpec`), kept out of the op file.

The tools (``benchmark.py --ops``, ``get_flops.py``, ``vis_attention.py``) and the tests iterate
:func:`op_specs`, so an op registered from anywhere (a file under ``tests/`` included) is found
with no list to edit. Registering a name that another module registered raises ``KeyError``.
"""
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, Dict, Mapping, Optional

_OPS: Dict[str, 'OpSpec'] = {}


@dataclass(frozen=True)
class OpSpec:
    """One op family's declaration.

    Args:
        name (str): short name, e.g. ``'routing'``: the ``--ops`` name of the benchmark.
        module (str): the module that defines the functional ops, e.g. ``'mmattn.ops.routing'``.
        references (Mapping[str, Callable]): functional op name -> its reference.
        macs (Mapping[str, Callable]): functional op name -> ``formula(out, *args, **kwargs)``,
            the MACs of the definition for that call (empty when the aten ops the op runs are
            exactly the definition's matmuls, convs and SDPA calls).
        tools (str, optional): the module holding ``bench_cases(device='cpu', quick=False)``
            (the cases of ``tools/analysis/benchmark.py --ops``, see
            :func:`mmattn.ops.common.check_bench_case`) and ``ATTENTION_PANELS``
            (``{module class name: panels(module, args, locate, captures)}``, what
            ``tools/analysis/vis_attention.py`` draws, see
            :class:`mmattn.ops.common.AttentionPanel`).
            None: the op has neither.
    """
    name: str
    module: str
    references: Mapping[str, Callable] = field(default_factory=dict)
    macs: Mapping[str, Callable] = field(default_factory=dict)
    tools: Optional[str] = None

    def op_module(self) -> ModuleType:
        """The module that defines the functional ops."""
        return importlib.import_module(self.module)

    def functional_ops(self) -> Dict[str, Callable]:
        """Functional op name -> the function, for every op with a reference."""
        module = self.op_module()
        return {name: getattr(module, name) for name in self.references}

    def tools_module(self) -> Optional[ModuleType]:
        """The module of ``bench_cases`` and ``ATTENTION_PANELS`` (imported on first use)."""
        return None if self.tools is None else importlib.import_module(self.tools)

    def bench_cases(self, device: str = 'cpu', quick: bool = False) -> list:
        """The benchmark cases the tools module declares; ``[]`` without one."""
        tools = self.tools_module()
        return [] if tools is None else tools.bench_cases(device=device, quick=quick)

    def attention_panels(self) -> Dict[str, Callable]:
        """Module class name -> panels function, as the tools module declares; ``{}``
        without one."""
        tools = self.tools_module()
        return {} if tools is None else dict(getattr(tools, 'ATTENTION_PANELS', {}))

    def mac_handles(self) -> Dict[str, Callable]:
        """``'module:function'`` -> MAC formula, the targets ``get_flops`` counts."""
        return {f'{self.module}:{name}': formula for name, formula in self.macs.items()}


def register_op(name: str,
                references: Mapping[Callable, Callable],
                macs: Optional[Mapping[Callable, Callable]] = None,
                tools: Optional[str] = None,
                module: Optional[str] = None) -> OpSpec:
    """Declare an op family (once, at the end of its op file).

    Args:
        name (str): short name, e.g. ``'routing'``.
        references (Mapping[Callable, Callable]): each functional op -> its reference. The ops
            must be module-level functions of one module (``get_flops`` rebinds them by name).
        macs (Mapping[Callable, Callable], optional): functional op -> MAC formula of its
            definition, ``formula(out, *args, **kwargs)``. Defaults to none.
        tools (str, optional): importable name of the module holding the op's
            ``bench_cases`` and ``ATTENTION_PANELS``. Defaults to None.
        module (str, optional): the op module's name, needed only when ``references`` and
            ``macs`` are empty. Defaults to the functional ops' module.

    Returns:
        OpSpec: the declaration, as :func:`op_specs` returns it.

    Raises:
        KeyError: ``name`` is registered already by another module.
        ValueError: the functional ops are not module-level functions of one module (that of
            ``module`` when given).
    """
    macs = dict(macs or {})
    ops = list(references) + [fn for fn in macs if fn not in references]
    modules = {fn.__module__ for fn in ops} | ({module} if module else set())
    if len(modules) != 1:
        raise ValueError(f'op {name!r}: the functional ops must come from one module, got '
                         f'{sorted(modules)}')
    module = modules.pop()
    for fn in ops:
        if getattr(importlib.import_module(module), fn.__name__, None) is not fn:
            raise ValueError(f'op {name!r}: {fn.__name__} is not a module-level function of '
                             f'{module}')
    spec = OpSpec(name, module, {fn.__name__: ref for fn, ref in references.items()},
                  {fn.__name__: formula for fn, formula in macs.items()}, tools)
    if name in _OPS and _OPS[name].module != module:  # the same module again: a reload
        raise KeyError(f'op {name!r} is registered already by {_OPS[name].module}')
    _OPS[name] = spec
    return spec


def op_specs() -> Dict[str, OpSpec]:
    """Every registered op family by short name, sorted by name."""
    import mmattn.ops  # noqa: F401  (the package's own op files register on import)
    return dict(sorted(_OPS.items()))
