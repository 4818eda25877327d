"""Property tests (hypothesis) for the BiFormer and NAT/DiNAT ops: random batch, map sizes, heads,
head dims, region grids / kernel sizes and dilations within the documented ranges keep the fast
path equal to the reference in float64, forward and backward. (The other families' ops have
theirs in their own test files.)"""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmattn.ops.neighborhood import (neighborhood_attention_2d,
                                     neighborhood_attention_2d_reference)
from mmattn.ops.routing import BiLevelRoutingAttention, bra_reference

F64 = torch.float64


@st.composite
def bra_cases(draw):
    n_win = draw(st.integers(1, 5))
    return dict(batch=draw(st.integers(1, 2)), height=draw(st.integers(1, 17)),
                width=draw(st.integers(1, 17)), n_win=n_win,
                topk=draw(st.integers(1, n_win * n_win)), heads=draw(st.integers(1, 3)),
                head_dim=draw(st.integers(1, 6)), seed=draw(st.integers(0, 2**16)))


@settings(max_examples=25, deadline=None)
@given(bra_cases())
def test_bra_fast_equals_reference(case):
    torch.manual_seed(case['seed'])
    dim = case['heads'] * case['head_dim']
    layer = BiLevelRoutingAttention(dim, case['heads'], case['n_win'], case['topk']).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    x = torch.randn(case['batch'], case['height'], case['width'], dim, dtype=F64,
                    requires_grad=True)
    out = layer(x)
    ref = bra_reference(x, layer.qkv.weight, layer.qkv.bias, layer.lepe.weight, layer.lepe.bias,
                        layer.proj.weight, layer.proj.bias, layer.n_win, layer.topk,
                        layer.num_heads, auto_pad=True)[0]
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-11)
    grad = torch.randn_like(out)
    params = [x, *layer.parameters()]
    for a, b in zip(torch.autograd.grad(out, params, grad), torch.autograd.grad(ref, params, grad)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


@st.composite
def na_cases(draw):
    kernel = draw(st.sampled_from([3, 5, 7]))  # documented: odd, >= 3
    dilation = draw(st.integers(1, 4))
    low = kernel * dilation  # NATTEN's range: every axis at least kernel_size * dilation
    return dict(batch=draw(st.integers(1, 2)), height=draw(st.integers(low, low + 9)),
                width=draw(st.integers(low, low + 9)), kernel=kernel, dilation=dilation,
                heads=draw(st.integers(1, 3)), head_dim=draw(st.integers(1, 5)),
                rpb=draw(st.booleans()), tile=draw(st.sampled_from([1, 3, 64])),
                seed=draw(st.integers(0, 2**16)))


@settings(max_examples=25, deadline=None)
@given(na_cases())
def test_na_fast_equals_reference(case):
    gen = torch.Generator().manual_seed(case['seed'])
    shape = (case['batch'], case['height'], case['width'], case['heads'], case['head_dim'])
    q, k, v = (torch.randn(*shape, generator=gen, dtype=F64, requires_grad=True)
               for _ in range(3))
    size = 2 * case['kernel'] - 1
    rpb = (torch.randn(case['heads'], size, size, generator=gen, dtype=F64, requires_grad=True)
           if case['rpb'] else None)
    args = (q, k, v, case['kernel'], case['dilation'], rpb)
    out = neighborhood_attention_2d(*args, tile=case['tile'])
    ref = neighborhood_attention_2d_reference(*args)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-11)
    inputs = [q, k, v] + ([rpb] if rpb is not None else [])
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(ref, inputs, grad)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
