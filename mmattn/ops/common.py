"""What every op module shares: the q/k/v input check, the attention-picture panel type and
the benchmark-case check.

Every op file of this package ends with its declaration in the op registry
(:func:`mmattn.ops.registry.register_op`, see docs/adding_a_family.md): its functional ops and
their references, the MAC formulas ``tools/analysis/get_flops.py`` counts the definition with,
and the tools module (``mmattn/analysis/ops/<op>.py``) that holds ``ATTENTION_PANELS``
(``{module class name: panels(module, args, locate, captures)}``, what
``tools/analysis/vis_attention.py`` draws for one query, see :class:`AttentionPanel`) and
``bench_cases(device='cpu', quick=False)`` (the cases of ``tools/analysis/benchmark.py --ops``,
see :func:`check_bench_case`).
"""
from typing import NamedTuple, Optional, Sequence, Tuple

from torch import Tensor


def check_qkv(q: Tensor, k: Tensor, v: Tensor, layout: Sequence[str],
              same_shape: bool = True) -> None:
    """Raise ValueError unless q, k and v are tensors of ``len(layout)`` dimensions (and, with
    ``same_shape``, of one shape).

    Args:
        q, k, v: the op's inputs.
        layout (Sequence[str]): the dimension names, for the message, e.g.
            ``('B', 'H', 'W', 'heads', 'head_dim')``.
        same_shape (bool): also require ``q.shape == k.shape == v.shape``. Defaults to True.
    """
    for name, t in (('q', q), ('k', k), ('v', v)):
        if not isinstance(t, Tensor) or t.dim() != len(layout):
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f'{name} must be a {len(layout)}-D tensor ({", ".join(layout)}), '
                             f'got {got}')
    if same_shape and not q.shape == k.shape == v.shape:
        raise ValueError(f'q, k, v must have the same shape, got {tuple(q.shape)}, '
                         f'{tuple(k.shape)}, {tuple(v.shape)}')


def tokens_to_map(x: Tensor, hw: Tuple[int, int]) -> Tensor:
    """Tokens (B, H*W, C), row-major, as a (B, C, H, W) map: a channels-last view, no copy.

    ``x.transpose(1, 2).reshape(B, C, H, W)`` gives the same values, but with a batch of one
    that view's batch stride is C, so PyTorch does not recognise it as channels-last: a
    convolution on it first copies it to NCHW and runs the NCHW kernels. For a 3x3 depthwise
    conv on a 512-channel 200x304 map (Dual-ViT-S's first-stage FFN at 800x1216) that is a 190 ms
    copy plus 2.5x slower kernels, forward and backward, on the 2-core CPU of the speed tables.
    """
    b, _, c = x.shape
    return x.reshape(b, *hw, c).permute(0, 3, 1, 2)


def check_heads(embed_dims: int, num_heads: int) -> None:
    """Raise ValueError unless ``num_heads`` divides ``embed_dims`` (heads split the channels)."""
    if embed_dims % num_heads:
        raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})')


class AttentionPanel(NamedTuple):
    """One picture of what a query attends to.

    ``heat`` is a 2-D map over the attention layer's feature map (or over another grid, e.g.
    Dual-ViT's semantic tokens), stretched over the image when drawn; ``grid`` (rows, cols),
    when set, is a region grid to draw over it, in heat cells.
    """
    name: str
    title: str
    heat: Tensor
    grid: Optional[tuple] = None


BENCH_CASE_KEYS = ('op', 'impl', 'size', 'build')


def check_bench_case(module_name: str, case: dict) -> None:
    """A benchmark case is a dict with ``op`` (str), ``impl`` (str), ``size`` (str label) and
    ``build`` (zero-argument callable returning ``(fn, inputs)``; ``fn(*inputs)`` returns a
    tensor, or a tuple of tensors for a floor that has no output comparable to the op's;
    inputs that need gradients have ``requires_grad`` set). For each (op, size) the
    first impl is mmattn's fast path, the others are reported as ratios to it."""
    missing = set(BENCH_CASE_KEYS) - set(case)
    if missing:
        raise ValueError(f'{module_name}.bench_cases(): a case lacks {sorted(missing)}: {case}')
