"""What the analysis tools read of Dual-ViT's attention (:mod:`mmattn.ops.dual`).

* ``ATTENTION_PANELS``: what ``tools/analysis/vis_attention.py`` draws of a dual-path layer;
* :func:`bench_cases`: the cases of ``tools/analysis/benchmark.py --ops dual``.
"""
import torch

from mmattn.ops.common import AttentionPanel
from mmattn.ops.dual import (POOL, DualPathAttention, SemanticTokenInit,
                             dual_path_attention_reference, multi_head_attention,
                             multi_head_attention_reference, pooled_grid)


def _stage_hw(tokens, stride4_hw):
    """(h, w) of a map with ``tokens`` pixels, one of the stride-4 map's halvings."""
    h, w = stride4_hw
    for _ in range(4):
        if h * w == tokens:
            return h, w
        h, w = -(-h // 2), -(-w // 2)
    raise ValueError(f'no stage map has {tokens} tokens (stride-4 map {stride4_hw})')


def dual_panels(module, args, locate, captures):
    """The query pixel's attention over the semantic tokens, and the attention over the pixels
    of the semantic token over the query, recomputed by :func:`dual_path_attention_reference`.
    The stride-4 map size comes from the :class:`SemanticTokenInit` call in ``captures``."""
    (xn, z), m = args, module
    init = next(args for mod, args in captures.values() if isinstance(mod, SemanticTokenInit))
    stride4_hw = init[1]
    grid = pooled_grid(*stride4_hw)
    hw = _stage_hw(xn.shape[1], stride4_hw)
    _, _, weights = dual_path_attention_reference(xn, z, *m.op_args(), return_weights=True)
    qy, qx = locate(hw)
    sy, sx = locate(grid)
    to_semantic = weights['pixel_from_semantic'][0, :, qy * hw[1] + qx].mean(0).view(grid)
    from_pixels = weights['semantic_from_pixel'][0, :, sy * grid[1] + sx].mean(0).view(hw)
    return [AttentionPanel('pixel_to_semantic', f'Dual-ViT: the query pixel\'s attention over '
                           f'the {grid[0]}x{grid[1]} semantic tokens', to_semantic),
            AttentionPanel('semantic_to_pixels', 'Dual-ViT: the semantic token over the query '
                           'attends to these pixels', from_pixels)]


ATTENTION_PANELS = {'DualPathAttention': dual_panels}

# Dual-ViT-S on a 512x512 and a 1024x1024 input. In the official det/seg backbone the
# semantic-token count M = floor(H1/7) * floor(W1/7) follows the input (324 at 512^2, 1296 at
# 1024^2), so 4x the image area is 4x the pixels *and* 4x the semantic tokens: every
# cross-attention term grows ~16x, the merge-stage MHSA over N3 + M tokens ~16x too.
BENCH_SIDES = [512, 1024]
BENCH_QUICK_SIDES = [64]
# (op, stage, C, heads) of Dual-ViT-S; Tq, Tk follow from the side
BENCH_ATTENTIONS = [('pixel <- semantic', 1, 64, 2), ('semantic <- pixel', 1, 64, 2),
                    ('pixel <- semantic', 2, 128, 4), ('semantic <- pixel', 2, 128, 4),
                    ('merge MHSA', 3, 320, 10)]


def _bench_tokens(side, op, stage):
    """(Tq, Tk) of ``op`` at ``stage`` on a ``side`` x ``side`` input."""
    h1 = side // 4
    m = (h1 // POOL)**2
    n = (h1 // 2**(stage - 1))**2
    return {'pixel <- semantic': (n, m), 'semantic <- pixel': (m, n),
            'merge MHSA': (n + m, n + m)}[op]


def _bench_attention(tq, tk, c, heads, impl, device):

    def build():
        g = torch.Generator(device=device).manual_seed(0)
        q = torch.randn(1, tq, c, device=device, generator=g, requires_grad=True)
        k, v = (torch.randn(1, tk, c, device=device, generator=g, requires_grad=True)
                for _ in range(2))
        return (lambda *t: impl(*t, heads)), [q, k, v]

    return build


def _bench_dual_path(n, m, c, heads, impl, device):

    def build():
        torch.manual_seed(0)
        module = DualPathAttention(c, heads).to(device).eval()
        with torch.no_grad():  # layer scales ~1 as after training, not the 1e-6 init
            for gamma in (module.gamma1, module.gamma2, module.gamma3):
                gamma.fill_(1.)
        xn = torch.randn(1, n, c, device=device, requires_grad=True)
        z = torch.randn(1, m, c, device=device, requires_grad=True)
        return (lambda a, b: torch.cat(impl(module, a, b), 1)), [xn, z]

    return build


def bench_cases(device='cpu', quick=False):
    """SDPA against the explicit softmax(QK^T)V of the definition: each attention of Dual-ViT-S
    stages 1-3 at its token counts, and the whole stage-1 :class:`DualPathAttention` (three
    attentions, semantic MLP, projections) against :func:`dual_path_attention_reference`; see
    :func:`~mmattn.ops.common.check_bench_case`."""
    cases = []
    impls = {'SDPA': multi_head_attention, 'reference': multi_head_attention_reference}
    for side in BENCH_QUICK_SIDES if quick else BENCH_SIDES:
        tag = f'{side}x{side}'
        for op, stage, c, heads in BENCH_ATTENTIONS:
            tq, tk = _bench_tokens(side, op, stage)
            if quick:
                c, heads = c // 8, max(heads // 4, 1)
            for name, impl in impls.items():
                cases.append(dict(op=op, impl=name, size=f'{tag} s{stage} Tq={tq} Tk={tk} C{c}',
                                  build=_bench_attention(tq, tk, c, heads, impl, device)))
        n1, m = _bench_tokens(side, 'pixel <- semantic', 1)
        c, heads = (8, 1) if quick else (64, 2)  # Dual-ViT-S stage 1
        for name, impl in (('SDPA', lambda mod, a, b: mod(a, b)),
                           ('reference', lambda mod, a, b: dual_path_attention_reference(
                               a, b, *mod.op_args()))):
            cases.append(dict(op='dual-path attention', impl=name,
                              size=f'{tag} s1 N={n1} M={m} C{c}',
                              build=_bench_dual_path(n1, m, c, heads, impl, device)))
    return cases
