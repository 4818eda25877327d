"""Parameters and multiply-adds (MACs) of a model, with handles for every attention op mmattn uses.

The papers' "FLOPs" are multiply-adds of convolutions, linears and attention matmuls (fvcore's
convention; norms, softmax and element-wise ops ignored), so this module counts MACs and names
them so. Two counters miss the attention on the pinned stack, which is why this one exists:

* mmengine's jit-trace ``FlopAnalyzer`` counts 0 for ``aten::scaled_dot_product_attention`` and
  skips softmax (it warns "Unsupported operator");
* torch's ``FlopCounterMode`` has no formula for the CPU SDPA kernel
  (``aten._scaled_dot_product_flash_attention_for_cpu``), so SDPA on CPU counts 0 there too.

:class:`MacCounter` is a dispatch mode: every aten op passes through it, matmul-like ops are
counted with torch's own formulas (plus the CPU SDPA kernel), gathers are counted as zero MACs
but their output bytes are reported as memory traffic. Python-level attention ops whose fast path
computes more than the definition (the NA tiles attend to a padded key block and mask the rest)
get an analytic handle (:data:`OP_HANDLES`, filled from the MAC formulas each op file of
:mod:`mmattn.ops` declares in its :func:`~mmattn.ops.registry.register_op` call): the op still
runs, its inner ops are not counted, the handle's count of the *definition* is. Counting runs on
the meta device by default (no memory, no compute: a 2048x512 count takes a second) and falls
back to CPU for models that need real values (e.g. detectors' NMS).
"""
import copy
import importlib
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _cpu_sdpa_macs(query, key, value, *args, out_val=None, **kwargs):
    # (B, heads, L, E) @ (B, heads, S, E)^T then @ (B, heads, S, Ev): torch's own formula.
    return flop_counter.sdpa_flop_count(query.shape, key.shape, value.shape) // 2


# aten overload packet -> MACs(args, kwargs, out_val). torch's formulas count FLOPs = 2 MACs.
MAC_FORMULAS: Dict[object, Callable] = {
    packet: (lambda fn: lambda *a, **kw: fn(*a, **kw) // 2)(fn)
    for packet, fn in flop_counter.flop_registry.items()
}
MAC_FORMULAS[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_macs

# Data movement without arithmetic: reported as bytes written, never as MACs.
GATHER_OPS = {
    aten.index_select, aten.gather, aten.index, aten.take_along_dim, aten.embedding,
    aten._unsafe_index
}


@dataclass
class Complexity:
    """What :func:`measure` found. ``scopes`` maps module names ('' = the whole model)."""
    params: int
    macs: int
    gather_bytes: int
    scope_macs: Dict[str, int] = field(default_factory=dict)
    scope_gather_bytes: Dict[str, int] = field(default_factory=dict)
    scope_params: Dict[str, int] = field(default_factory=dict)
    op_macs: Dict[str, int] = field(default_factory=dict)
    device: str = 'meta'

    def subtree(self, name: str) -> tuple:
        """(params, MACs, gather bytes) of module ``name`` and everything under it."""
        def total(table):
            return sum(v for k, v in table.items()
                       if not name or k == name or k.startswith(name + '.'))
        return total(self.scope_params), total(self.scope_macs), total(self.scope_gather_bytes)


class MacCounter(TorchDispatchMode):
    """Counts MACs per innermost module scope and per op while active."""

    def __init__(self):
        super().__init__()
        self.macs = defaultdict(int)
        self.gather_bytes = defaultdict(int)
        self.op_macs = defaultdict(int)
        self.scope = ['']
        self.suspended = 0  # > 0 inside an op with an analytic handle

    def add(self, op_name: str, macs: int) -> None:
        self.macs[self.scope[-1]] += int(macs)
        self.op_macs[op_name] += int(macs)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in MAC_FORMULAS:
            if not self.suspended:
                self.add(str(packet), MAC_FORMULAS[packet](*args, **kwargs, out_val=out))
        elif packet in GATHER_OPS and isinstance(out, torch.Tensor):
            # counted inside handled ops too: the traffic is the implementation's real cost
            self.gather_bytes[self.scope[-1]] += out.numel() * out.element_size()
        return out

    def track(self, model: nn.Module) -> list:
        """Forward hooks that keep ``self.scope`` on the innermost running module."""
        def enter(name):
            return lambda module, args: self.scope.append(name)

        def leave(module, args, out):
            self.scope.pop()  # returns None: a hook's return value would replace the output

        handles = []
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_pre_hook(enter(name)))
                handles.append(module.register_forward_hook(leave))
        return handles


# ------------------------------------------------------------------------------------------
# Analytic handles: 'module.path:function' -> MACs(output, *args, **kwargs) of the definition.
# ------------------------------------------------------------------------------------------
OP_HANDLES: Dict[str, Callable] = {}


def register_op_handle(target: str):
    """Decorator: count calls of ``target`` ('pkg.module:function') with the decorated formula."""

    def _register(fn):
        OP_HANDLES[target] = fn
        return fn

    return _register


def _register_op_macs() -> None:
    """The MAC formulas of every registered op (``macs`` of its
    :func:`~mmattn.ops.registry.register_op` declaration); run again on every count, so an op
    registered after this module was imported is counted too."""
    from mmattn.ops import op_specs
    for spec in op_specs().values():
        for target, formula in spec.mac_handles().items():
            register_op_handle(target)(formula)


_register_op_macs()


class _patched_ops:
    """Rebind every module-level reference to a handled op while counting.

    Backbones (and users' code that imported the op) call it through a module global, so
    rebinding the name in every loaded module that holds the function reaches every call site.
    """

    def __init__(self, counter: MacCounter):
        self.counter = counter
        self.saved = []

    def _wrap(self, target, original, handle):
        counter = self.counter

        def counted(*args, **kwargs):
            counter.suspended += 1
            try:
                out = original(*args, **kwargs)
            finally:
                counter.suspended -= 1
            if not counter.suspended:
                counter.add(target, handle(out, *args, **kwargs))
            return out

        return counted

    def __enter__(self):
        _register_op_macs()
        for target, handle in OP_HANDLES.items():
            module_name, fn_name = target.split(':')
            original = getattr(importlib.import_module(module_name), fn_name)
            wrapped = self._wrap(target, original, handle)
            for mod in list(sys.modules.values()):
                # the module's own namespace: no lazy module __getattr__ is triggered
                if getattr(mod, '__dict__', {}).get(fn_name) is original:
                    self.saved.append((mod, fn_name, original))
                    setattr(mod, fn_name, wrapped)
        return self

    def __exit__(self, *exc):
        for mod, fn_name, original in reversed(self.saved):
            setattr(mod, fn_name, original)


def count_params(model: nn.Module) -> Dict[str, int]:
    """Parameter count per owning module name (shared parameters counted once)."""
    seen, table = set(), defaultdict(int)
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            continue
        seen.add(id(param))
        table[name.rpartition('.')[0]] += param.numel()
    return dict(table)


def _to_device(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


def measure(model: nn.Module, inputs: Sequence, forward: Optional[Callable] = None,
            device: str = 'meta') -> Complexity:
    """Params and forward MACs of ``forward(model, *inputs)`` (default ``model(*inputs)``).

    Args:
        model (nn.Module): the model; counted in eval mode. Left untouched: a model on another
            device than ``device`` is counted on a copy.
        inputs (Sequence): positional inputs (tensors are moved to ``device``).
        forward (Callable, optional): how to call the model, e.g. a detector's tensor mode.
        device (str): 'meta' (shapes only, no compute, no memory) or a real device.
            Default: 'meta'.
    """
    forward = forward or (lambda m, *xs: m(*xs))
    params = count_params(model)
    home = next(model.parameters(), torch.empty(0)).device
    if home != torch.device(device):
        model = copy.deepcopy(model).to(device)
    was_training = model.training
    model.eval()
    counter = MacCounter()
    hooks = counter.track(model)
    try:
        with torch.no_grad(), _patched_ops(counter), counter:
            forward(model, *_to_device(tuple(inputs), device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return Complexity(
        params=sum(params.values()), macs=sum(counter.macs.values()),
        gather_bytes=sum(counter.gather_bytes.values()), scope_macs=dict(counter.macs),
        scope_gather_bytes=dict(counter.gather_bytes), scope_params=params,
        op_macs=dict(counter.op_macs), device=str(device))


def measure_backbone(model: nn.Module, height: int, width: int, batch: int = 1,
                     device: str = 'meta') -> Complexity:
    """:func:`measure` of a bare backbone on a (batch, in_channels, height, width) input."""
    in_channels = getattr(model, 'in_channels', 3)
    return measure(model, (torch.zeros(batch, in_channels, height, width), ), device=device)


def stage_rows(result: Complexity, model: nn.Module) -> list:
    """(name, params, MACs, gather bytes) per top-level child, with ModuleLists (a backbone's
    stages) split into their entries and a detector's ``backbone`` expanded; for ``--detail``."""
    rows = []

    def visit(prefix, module):
        for name, child in module.named_children():
            full = prefix + name
            if isinstance(child, nn.ModuleList):
                rows.extend((f'{full}.{i}', *result.subtree(f'{full}.{i}'))
                            for i, _ in child.named_children())
                continue
            rows.append((full, *result.subtree(full)))
            if full == 'backbone':
                visit('backbone.', child)

    visit('', model)
    return rows
