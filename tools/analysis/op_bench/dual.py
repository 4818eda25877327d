"""Dual-ViT attention: mmattn's SDPA fast path vs the definition (explicit softmax(QK^T)V).

Token counts are those of Dual-ViT-S on a 512x512 and a 1024x1024 input: in the official det/seg
backbone the semantic-token count M = floor(H1/7) * floor(W1/7) follows the input (324 at 512^2,
1296 at 1024^2), so 4x the image area is 4x the pixels *and* 4x the semantic tokens: every
cross-attention term grows ~16x, the merge-stage MHSA over N3 + M tokens ~16x too.

- pixel <- semantic / semantic <- pixel: :func:`multi_head_attention` (SDPA) vs
  :func:`multi_head_attention_reference` on stage-1 (C 64, 2 heads) and stage-2 (C 128, 4 heads)
  token counts;
- merge MHSA: stage 3 (C 320, 10 heads) over N3 + M tokens;
- dual-path attention: the whole stage-1 :class:`DualPathAttention` (three attentions, semantic
  MLP, projections) vs :func:`dual_path_attention_reference` on the same module.
"""
import torch

from mmattn.ops.dual import (DualPathAttention, dual_path_attention_reference,
                             multi_head_attention, multi_head_attention_reference)


def _tokens(side):
    h1 = side // 4
    m = (h1 // 7)**2
    return [h1 * h1, (h1 // 2)**2, (h1 // 4)**2], m


def _attention(tq, tk, c, heads, impl, device):

    def build():
        g = torch.Generator(device=device).manual_seed(0)
        q = torch.randn(1, tq, c, device=device, generator=g, requires_grad=True)
        k, v = (torch.randn(1, tk, c, device=device, generator=g, requires_grad=True)
                for _ in range(2))
        fn = multi_head_attention if impl == 'SDPA' else multi_head_attention_reference
        return (lambda *t: fn(*t, heads)), [q, k, v]

    return build


def _dual_path(n, m, c, heads, impl, device):

    def build():
        torch.manual_seed(0)
        module = DualPathAttention(c, heads).to(device).eval()
        with torch.no_grad():  # layer scales ~1 as after training, not the 1e-6 init
            for gamma in (module.gamma1, module.gamma2, module.gamma3):
                gamma.fill_(1.)
        xn = torch.randn(1, n, c, device=device, requires_grad=True)
        z = torch.randn(1, m, c, device=device, requires_grad=True)
        if impl == 'SDPA':
            return (lambda a, b: torch.cat(module(a, b), 1)), [xn, z]
        return (lambda a, b: torch.cat(dual_path_attention_reference(module, a, b), 1)), [xn, z]

    return build


def cases(device='cpu', quick=False):
    out = []
    sides = [64] if quick else [512, 1024]
    for side in sides:
        (n1, n2, n3), m = _tokens(side)
        tag = f'{side}x{side}'
        specs = [  # (op, stage, Tq, Tk, C, heads)
            ('pixel <- semantic', 1, n1, m, 64, 2),
            ('semantic <- pixel', 1, m, n1, 64, 2),
            ('pixel <- semantic', 2, n2, m, 128, 4),
            ('semantic <- pixel', 2, m, n2, 128, 4),
            ('merge MHSA', 3, n3 + m, n3 + m, 320, 10),
        ]
        for op, stage, tq, tk, c, heads in specs:
            if quick:
                c, heads = c // 8, max(heads // 4, 1)
            label = f'{tag} s{stage} Tq={tq} Tk={tk} C{c}'
            for impl in ('SDPA', 'reference'):
                out.append(dict(op=op, impl=impl, size=label,
                                build=_attention(tq, tk, c, heads, impl, device)))
        c, heads = (8, 1) if quick else (64, 2)  # Dual-ViT-S stage 1
        for impl in ('SDPA', 'reference'):
            out.append(dict(op='dual-path attention', impl=impl,
                            size=f'{tag} s1 N={n1} M={m} C{c}',
                            build=_dual_path(n1, m, c, heads, impl, device)))
    return out
