import pytest
import torch
import torch.nn.functional as F

from mmattn.analysis.ops.routing import (bi_level_routing_attention_gather,
                                         bi_level_routing_attention_nchw)
from mmattn.ops import routing
from mmattn.ops.routing import (
    BiLevelRoutingAttention,
    GlobalAttentionLePE,
    bi_level_routing_attention,
    bi_level_routing_attention_reference,
    bra_reference,
    global_attention_lepe_reference,
)


def _reference_of(layer, x, auto_pad=None):
    auto_pad = layer.auto_pad if auto_pad is None else auto_pad
    return bra_reference(x, layer.qkv.weight, layer.qkv.bias, layer.lepe.weight, layer.lepe.bias,
                         layer.proj.weight, layer.proj.bias, layer.n_win, layer.topk,
                         layer.num_heads, auto_pad=auto_pad)


def _randomise(module):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return module


def _same_sets(idx_a, idx_b):
    return torch.equal(idx_a.sort(-1).values, idx_b.sort(-1).values)


@pytest.mark.parametrize(
    'size,n_win,topk,dim,heads',
    [
        ((14, 14), 7, 4, 32, 2),  # classification-like, no padding
        ((19, 26), 16, 16, 32, 2),  # det: heavy padding, regions made only of padding
        ((21, 33), 8, 4, 48, 3),  # seg: odd sizes, padding on both sides
        ((14, 21), 7, 1, 16, 1),  # auto_pad on but nothing to pad
        ((5, 3), 4, 16, 16, 4),  # map smaller than the region grid, topk = S*S
    ])
def test_bra_fast_equals_reference_float64(size, n_win, topk, dim, heads):
    layer = _randomise(BiLevelRoutingAttention(dim, heads, n_win, topk).double())
    batch = 1 if n_win >= 16 else 2  # the reference loops over regions in Python
    x = torch.randn(batch, *size, dim, dtype=torch.float64)
    out, idx = layer(x, return_routing=True)
    ref, ref_idx = _reference_of(layer, x)
    assert out.shape == (batch, *size, dim)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert _same_sets(idx, ref_idx)


def test_bra_gradients_equal_reference_float64():
    layer = _randomise(BiLevelRoutingAttention(16, 2, 4, 3).double())
    x = torch.randn(1, 11, 13, 16, dtype=torch.float64, requires_grad=True)
    grads = torch.autograd.grad(layer(x).square().sum(), [x, *layer.parameters()])
    ref_grads = torch.autograd.grad(_reference_of(layer, x)[0].square().sum(),
                                    [x, *layer.parameters()])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-10)


def test_bra_gradcheck_tiny():
    layer = _randomise(BiLevelRoutingAttention(8, 2, 2, 2).double())
    x = torch.randn(1, 5, 3, 8, dtype=torch.float64, requires_grad=True)
    # routing is piecewise constant; with random inputs no affinities are near-tied
    assert torch.autograd.gradcheck(layer, (x, ), eps=1e-6, atol=1e-5)


def test_auto_pad_equals_explicit_zero_padding():
    layer = _randomise(BiLevelRoutingAttention(16, 2, 4, 2).double())
    x = torch.randn(1, 9, 14, 16, dtype=torch.float64)
    padded = F.pad(x, (0, 0, 0, 2, 0, 3))  # to 12 x 16: bottom/right, zeros *before* qkv
    layer.auto_pad = False
    explicit = layer(padded)[:, :9, :14]
    layer.auto_pad = True
    torch.testing.assert_close(layer(x), explicit, rtol=0, atol=1e-13)


def test_bra_float32_matches_reference():
    layer = _randomise(BiLevelRoutingAttention(32, 2, 4, 4))
    x = torch.randn(2, 16, 20, 32)
    out, idx = layer(x, return_routing=True)
    ref, ref_idx = _reference_of(layer.double(), x.double())
    assert _same_sets(idx, ref_idx)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


def test_functional_core_and_default_scale():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 8, 8, 16, dtype=torch.float64) for _ in range(3))
    out, idx = bi_level_routing_attention(q, k, v, n_win=2, topk=4, num_heads=2)
    # topk = all regions: every query attends to every token -> plain MHSA with scale C**-0.5
    qh, kh, vh = (t.reshape(1, 64, 2, 8).transpose(1, 2) for t in (q, k, v))
    dense = torch.softmax(qh @ kh.transpose(-1, -2) * 16**-0.5, -1) @ vh
    dense = dense.transpose(1, 2).reshape(1, 64, 16)
    # region-major token order inside the functional output vs row-major dense: compare maps
    torch.testing.assert_close(out.reshape(1, 64, 16), dense, rtol=0, atol=1e-12)
    assert idx.shape == (1, 4, 4)


@pytest.mark.parametrize('impl', [bi_level_routing_attention_gather,
                                  bi_level_routing_attention_nchw,
                                  bi_level_routing_attention_reference])
def test_core_forms_equal_the_fast_core(impl):
    # the reference (per-region loops) and the official legacy and NCHW forms (the benchmark's
    # anchors) take the fast core's arguments and give its output and routing in float64
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 12, 8, 12, generator=g, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    out, idx = bi_level_routing_attention(q, k, v, 4, 3, 3)
    other, other_idx = impl(q, k, v, 4, 3, 3)
    assert _same_sets(idx, other_idx)
    torch.testing.assert_close(other, out, rtol=0, atol=1e-12)
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), grad),
                    torch.autograd.grad(other, (q, k, v), grad)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_bra_bad_input_errors():
    with pytest.raises(ValueError, match='topk'):
        BiLevelRoutingAttention(16, 2, n_win=2, topk=5)
    with pytest.raises(ValueError, match='divisible by num_heads'):
        BiLevelRoutingAttention(16, 3, 2, 1)
    layer = BiLevelRoutingAttention(16, 2, 4, 1, auto_pad=False)
    with pytest.raises(ValueError, match='auto_pad=True'):
        layer(torch.randn(1, 10, 12, 16))


def test_global_attention_equals_reference():
    attn = _randomise(GlobalAttentionLePE(64, num_heads=8).double())
    assert attn.qkv.bias is None  # official stage 4: bias-free qkv
    x = torch.randn(2, 5, 7, 64, dtype=torch.float64)
    ref = global_attention_lepe_reference(x, attn.qkv.weight, attn.lepe.weight, attn.lepe.bias,
                                          attn.proj.weight, attn.proj.bias, num_heads=8)
    torch.testing.assert_close(attn(x), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize('impl', [bi_level_routing_attention_gather,
                                  bi_level_routing_attention_nchw])
def test_anchors_equal_the_reference_float64(impl):
    # each benchmark anchor against the definition itself, on a map with non-square regions
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 12, 15, 16, generator=g, dtype=torch.float64) for _ in range(3))
    out, idx = impl(q, k, v, 3, 4, 2)
    ref, ref_idx = bi_level_routing_attention_reference(q, k, v, 3, 4, 2)
    assert _same_sets(idx, ref_idx)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize('out_size', [None, (9, 11)])
def test_chunked_cpu_path_is_bit_identical_to_one_gather(monkeypatch, out_size):
    # the CPU path attends chunk by chunk (here 2 query regions at a time) and skips the query
    # regions outside out_size; the one-gather form (traced / compiled / other devices) runs
    # the same kernels on the whole gather and crops: same bits, forward and backward (float32)
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(2, 16, 24, 32, generator=g, requires_grad=True) for _ in range(3))
    grad = torch.randn(2, *(out_size or (16, 24)), 32, generator=g)
    monkeypatch.setattr(routing, 'ROUTED_CHUNK_BYTES', 2 * 3 * 24 * 32 * 4)
    results = []
    for chunked in (True, False):
        monkeypatch.setattr(routing, '_chunked_path', lambda t, chunked=chunked: chunked)
        out, idx = bi_level_routing_attention(q, k, v, 4, 3, 2, out_size=out_size)
        results.append((out, idx, *torch.autograd.grad(out, (q, k, v), grad)))
    for a, b in zip(*results):
        assert torch.equal(a, b)
