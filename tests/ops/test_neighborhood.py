"""Neighborhood attention op: fast path == definition (NATTEN's 2-D neighborhood attention with
dilation and rpb)."""
import pytest
import torch

from mmattn.analysis.ops.neighborhood import (neighborhood_attention_2d_dense,
                                              neighborhood_attention_2d_unfold)
from mmattn.ops.neighborhood import (NeighborhoodAttention, _neighborhood_attention_2d_traced,
                                     _static_axis, _tile_offsets, _window_1d,
                                     neighborhood_attention_2d,
                                     neighborhood_attention_2d_reference)

F64 = torch.float64


def _qkv(b, h, w, heads, dim, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, w, heads, dim, generator=g, dtype=dtype).requires_grad_()
            for _ in range(3)]


def _rpb(heads, k, seed=1, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(heads, 2 * k - 1, 2 * k - 1, generator=g, dtype=dtype).requires_grad_()


def _max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize('i, length, k, d, expected', [
    (0, 10, 3, 1, [0, 1, 2]),
    (9, 10, 3, 1, [7, 8, 9]),
    (5, 10, 3, 1, [4, 5, 6]),
    (0, 10, 3, 2, [0, 2, 4]),
    (8, 10, 3, 2, [4, 6, 8]),
    (9, 10, 3, 2, [5, 7, 9]),
    (10, 11, 3, 2, [6, 8, 10]),
    (3, 56, 7, 8, list(range(3, 56, 8))),
    (55, 56, 7, 8, list(range(7, 56, 8))),
])
def test_reference_windows_match_spec_examples(i, length, k, d, expected):
    assert _window_1d(i, length, k, d) == expected


# (H, W, kernel, dilation): odd sizes, lengths not divisible by d (groups of unequal length),
# H or W == kernel*dilation exactly, kernel == map size.
CASES = [
    (13, 17, 3, 1), (13, 17, 3, 2), (13, 17, 3, 3), (13, 17, 5, 1), (13, 17, 5, 2),
    (15, 16, 5, 3), (13, 17, 7, 1), (14, 19, 7, 2), (21, 23, 7, 3), (9, 10, 3, 3),
    (13, 15, 13, 1),
]


@pytest.mark.parametrize('h, w, k, d', CASES)
@pytest.mark.parametrize('with_rpb', [True, False])
def test_fast_equals_reference_forward_backward(h, w, k, d, with_rpb):
    q, kk, v = _qkv(2, h, w, 2, 3, seed=h * w + k + d)
    rpb = _rpb(2, k) if with_rpb else None
    scale = 0.37 if (h + k) % 2 else None  # custom scale on about half of the cases
    inputs = [q, kk, v] + ([rpb] if with_rpb else [])
    out = neighborhood_attention_2d(q, kk, v, k, d, rpb, scale)
    ref = neighborhood_attention_2d_reference(q, kk, v, k, d, rpb, scale)
    assert out.shape == (2, h, w, 2, 3)
    assert _max_diff(out, ref) < 1e-12
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, inputs, grad)
    want = torch.autograd.grad(ref, inputs, grad)
    for name, a, b in zip('q k v rpb'.split(), got, want):
        assert _max_diff(a, b) < 1e-11, name


def test_tile_size_does_not_change_result():
    q, k, v = _qkv(1, 19, 22, 2, 4)
    rpb = _rpb(2, 5)
    base = neighborhood_attention_2d(q, k, v, 5, 2, rpb, tile=6)
    for tile in (1, 2, 3, 4, 8, 11):
        assert _max_diff(neighborhood_attention_2d(q, k, v, 5, 2, rpb, tile=tile), base) < 1e-12


def test_rpb_offset_sign_and_axis_order():
    # q = k = 0, so the logits are the bias alone; one large rpb entry at row offset +1,
    # column offset +2 makes every query copy the value of pixel (i+1, j+2) when that pixel is
    # in its window. Swapped axes would give (i+2, j+1); Swin's sign would give (i-1, j-2).
    h, w, k = 9, 11, 5
    for fn in (neighborhood_attention_2d, neighborhood_attention_2d_reference):
        zeros = torch.zeros(1, h, w, 1, 2, dtype=F64)
        v = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij'), -1)
        v = v.to(F64).view(1, h, w, 1, 2)
        rpb = torch.zeros(1, 2 * k - 1, 2 * k - 1, dtype=F64)
        rpb[0, k - 1 + 1, k - 1 + 2] = 100.
        out = fn(zeros, zeros, v, k, 1, rpb)[0, :, :, 0]
        # the corner (0, 0): window rows 0..4, cols 0..4 contains (1, 2)
        assert torch.allclose(out[0, 0], torch.tensor([1., 2.], dtype=F64))
        assert torch.allclose(out[4, 3], torch.tensor([5., 5.], dtype=F64))
        # bottom-right corner: window rows 4..8 / cols 6..10 lacks (9, 12): uniform average
        assert torch.allclose(out[h - 1, w - 1], torch.tensor([6., 8.], dtype=F64))


def test_kernel_equal_to_map_is_full_attention_with_offset_bias():
    # Independent of both implementations' index code: K == H == W means every query sees the
    # whole map and the bias is rpb[K-1 + (ki - i), K-1 + (kj - j)].
    n = 5
    q, k, v = _qkv(1, n, n, 2, 4)
    rpb = _rpb(2, n)
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing='ij')
    ii, jj = ii.flatten(), jj.flatten()
    bias = rpb[:, n - 1 + ii[None, :] - ii[:, None], n - 1 + jj[None, :] - jj[:, None]]
    qf, kf, vf = (t.reshape(1, n * n, 2, 4).transpose(1, 2) for t in (q, k, v))
    attn = torch.softmax(qf @ kf.transpose(-1, -2) * 0.5 + bias, -1)
    want = (attn @ vf).transpose(1, 2).reshape(1, n, n, 2, 4)
    assert _max_diff(neighborhood_attention_2d(q, k, v, n, 1, rpb), want) < 1e-12


def test_dilation_equals_plain_na_on_each_subgrid():
    h, w, k, d = 17, 20, 3, 3  # residue groups of 6/6/5 rows and 7/7/6 columns
    q, kk, v = _qkv(2, h, w, 2, 3)
    rpb = _rpb(2, k)
    out = neighborhood_attention_2d(q, kk, v, k, d, rpb)
    for g1 in range(d):
        for g2 in range(d):
            sub = [t[:, g1::d, g2::d] for t in (q, kk, v)]
            want = neighborhood_attention_2d(*sub, k, 1, rpb)
            assert _max_diff(out[:, g1::d, g2::d], want) < 1e-12


def test_float32_close_to_float64_reference():
    q, k, v = _qkv(1, 16, 21, 2, 32, dtype=torch.float32)
    rpb = _rpb(2, 7, dtype=torch.float32)
    out = neighborhood_attention_2d(q, k, v, 7, 2, rpb)
    ref = neighborhood_attention_2d_reference(*(t.double() for t in (q, k, v)), 7, 2, rpb.double())
    assert out.dtype == torch.float32
    assert _max_diff(out.double(), ref) < 1e-5


def test_gradcheck():
    q, k, v = _qkv(1, 6, 7, 2, 2)
    rpb = _rpb(2, 3)
    assert torch.autograd.gradcheck(
        lambda *t: neighborhood_attention_2d(*t[:3], 3, 2, t[3], 0.8), (q, k, v, rpb))


def test_dropout_path_matches_reference_when_nothing_is_dropped():
    # dropout_p > 0 leaves the fused autograd Function; p = 1e-12 drops nothing (in practice)
    q, k, v = _qkv(2, 11, 13, 2, 3)
    rpb = _rpb(2, 3)
    out = neighborhood_attention_2d(q, k, v, 3, 2, rpb, dropout_p=1e-12)
    ref = neighborhood_attention_2d_reference(q, k, v, 3, 2, rpb)
    assert _max_diff(out, ref) < 1e-10
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v, rpb), grad),
                    torch.autograd.grad(ref, (q, k, v, rpb), grad)):
        assert _max_diff(a, b) < 1e-10
    dropped = neighborhood_attention_2d(q, k, v, 3, 2, rpb, dropout_p=0.5)
    assert torch.isfinite(dropped).all() and _max_diff(dropped, ref) > 1e-3


def test_module_matches_reference_built_from_its_weights():
    torch.manual_seed(0)
    c, heads, k, d = 12, 3, 3, 2
    module = NeighborhoodAttention(c, heads, k, d).double()
    assert sorted(module.state_dict()) == [
        'proj.bias', 'proj.weight', 'qkv.bias', 'qkv.weight', 'rpb']
    assert module.qkv.weight.shape == (3 * c, c)
    assert module.rpb.shape == (heads, 2 * k - 1, 2 * k - 1)
    assert 0 < module.rpb.std() < 0.05 and module.rpb.abs().max() <= 2
    x = torch.randn(2, 7, 9, c, dtype=F64)
    out = module(x)
    assert out.shape == x.shape
    qkv = (x @ module.qkv.weight.T + module.qkv.bias).view(2, 7, 9, 3, heads, c // heads)
    attn = neighborhood_attention_2d_reference(qkv[..., 0, :, :], qkv[..., 1, :, :],
                                               qkv[..., 2, :, :], k, d, module.rpb)
    want = attn.reshape(2, 7, 9, c) @ module.proj.weight.T + module.proj.bias
    assert _max_diff(out, want) < 1e-12
    out.sum().backward()
    assert module.rpb.grad is not None and module.rpb.grad.abs().sum() > 0


def test_module_without_rpb_and_registered():
    from mmattn.registry import MODELS
    module = MODELS.build(dict(type='NeighborhoodAttention', embed_dims=8, num_heads=2,
                               kernel_size=5, rel_pos_bias=False, qkv_bias=False))
    assert isinstance(module, NeighborhoodAttention)
    assert module.rpb is None and module.qkv.bias is None
    assert 'rpb' not in module.state_dict()
    assert module(torch.randn(1, 5, 6, 8)).shape == (1, 5, 6, 8)


def test_too_small_input_raises_with_sizes():
    q, k, v = _qkv(1, 13, 20, 1, 2)
    with pytest.raises(ValueError, match=r'7\*2 = 14.*13x20'):
        neighborhood_attention_2d(q, k, v, 7, 2)
    module = NeighborhoodAttention(8, 2, 7)
    with pytest.raises(ValueError, match=r'6x9'):
        module(torch.randn(1, 6, 9, 8))


@pytest.mark.parametrize('kernel_size, dilation, match', [
    (4, 1, 'odd'), (1, 1, 'odd'), (3.0, 1, 'odd'), (3, 0, 'dilation'), (3, -1, 'dilation')])
def test_bad_kernel_or_dilation_raises(kernel_size, dilation, match):
    q, k, v = _qkv(1, 9, 9, 1, 2)
    with pytest.raises(ValueError, match=match):
        neighborhood_attention_2d(q, k, v, kernel_size, dilation)
    with pytest.raises(ValueError, match=match):
        NeighborhoodAttention(8, 2, kernel_size, dilation)


def test_bad_shapes_raise():
    q, k, v = _qkv(1, 9, 9, 2, 2)
    with pytest.raises(ValueError, match=r'rpb must have shape.*\(2, 5, 5\)'):
        neighborhood_attention_2d(q, k, v, 3, 1, torch.zeros(2, 3, 3, dtype=F64))
    with pytest.raises(ValueError, match='rpb'):
        neighborhood_attention_2d(q, k, v, 3, 1, torch.zeros(1, 5, 5, dtype=F64))
    with pytest.raises(ValueError, match='same shape'):
        neighborhood_attention_2d(q, k[:, :8], v, 3)
    with pytest.raises(ValueError, match='5-D'):
        neighborhood_attention_2d(q[0], k[0], v[0], 3)
    with pytest.raises(ValueError, match='divisible'):
        NeighborhoodAttention(10, 3, 3)


@pytest.mark.parametrize('impl',
                         [neighborhood_attention_2d_unfold, neighborhood_attention_2d_dense])
@pytest.mark.parametrize('h, w, k, d', [(9, 11, 3, 1), (13, 10, 3, 3), (7, 8, 5, 1)])
def test_benchmark_forms_equal_reference(impl, h, w, k, d):
    # the benchmark's unfold (im2col) and dense SDPA forms take the op's arguments
    q, k_, v = _qkv(2, h, w, 2, 3, seed=4)
    rpb = _rpb(2, k, seed=5)
    ref = neighborhood_attention_2d_reference(q, k_, v, k, d, rpb)
    out = impl(q, k_, v, k, d, rpb)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    grad = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (q, k_, v, rpb), grad),
                    torch.autograd.grad(ref, (q, k_, v, rpb), grad)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


# ------------------------------------------------------------- traced form (static tile plan)


@pytest.mark.parametrize('kernel_size', [3, 7, 13])
@pytest.mark.parametrize('dilation', [1, 2, 3, 8])
@pytest.mark.parametrize('tile', [1, 2, 4, 6])
def test_static_plan_tile_classes_hold_every_tile_offsets(kernel_size, dilation, tile):
    """The traced form takes each tile's bias from its class, found by formula (first tiles,
    interior, last tiles per group length) instead of ``torch.unique``: every tile of every
    length from K*d to K*d + 40 must have exactly its class's offsets."""
    for length in range(kernel_size * dilation, kernel_size * dilation + 41):
        axis = _static_axis(length, kernel_size, dilation, tile, torch.device('cpu'))
        n_max = -(-length // dilation)
        tiles = -(-n_max // tile)
        n = torch.tensor([-(-(length - g) // dilation) for g in range(dilation)])[:, None]
        every = _tile_offsets(torch.arange(tiles).expand(dilation, -1), n.expand(-1, tiles),
                              kernel_size, tile).flatten(0, 1)
        assert 0 <= axis.tile_cls.min() and axis.tile_cls.max() < axis.off_cls.shape[0]
        assert torch.equal(axis.off_cls[axis.tile_cls], every), length


# Beside CASES: K == map size with dilation, dilation 4 with groups of unequal length, maps
# shorter than one key block (tile + K - 1) on one axis.
TRACED_CASES = CASES + [(7, 7, 7, 1), (14, 14, 7, 2), (28, 29, 7, 4), (40, 13, 3, 4)]


@pytest.mark.parametrize('h, w, k, d', TRACED_CASES)
def test_traced_form_equals_reference(h, w, k, d):
    """The form ``torch.compile`` / ``torch.export`` / ONNX export trace, at several tile
    sizes, with and without rpb and with the export-time logit floor (a change below e**-80 of
    the largest weight)."""
    q, kk, v = _qkv(1, h, w, 3, 4, seed=h * w + k + d)
    rpb = _rpb(3, k)
    scale = 0.37 if (h + k) % 2 else 4**-0.5
    ref = neighborhood_attention_2d_reference(q, kk, v, k, d, rpb, scale)
    ref_no_rpb = neighborhood_attention_2d_reference(q, kk, v, k, d, None, scale)
    zeros = q.new_zeros(1, 2 * k - 1, 2 * k - 1)
    for tile in (1, 4, 6):
        for floor in (False, True):
            out = _neighborhood_attention_2d_traced(q, kk, v, k, d, rpb, scale, 0., tile, floor)
            assert out.shape == ref.shape and out.is_contiguous()
            assert _max_diff(out, ref) < 1e-12, (tile, floor)
        out = _neighborhood_attention_2d_traced(q, kk, v, k, d, zeros, scale, 0., tile)
        assert _max_diff(out, ref_no_rpb) < 1e-12, tile


@pytest.mark.parametrize('h, w, k, d', [(13, 17, 3, 2), (14, 19, 7, 2), (9, 10, 3, 3)])
def test_traced_form_gradients_equal_reference(h, w, k, d):
    """``torch.compile`` of a training step differentiates the traced form."""
    q, kk, v = _qkv(2, h, w, 2, 3, seed=7)
    rpb = _rpb(2, k)
    out = _neighborhood_attention_2d_traced(q, kk, v, k, d, rpb, 0.5, 0.)
    ref = neighborhood_attention_2d_reference(q, kk, v, k, d, rpb, 0.5)
    grad = torch.randn_like(ref)
    for name, a, b in zip('q k v rpb'.split(), torch.autograd.grad(out, (q, kk, v, rpb), grad),
                          torch.autograd.grad(ref, (q, kk, v, rpb), grad)):
        assert _max_diff(a, b) < 1e-11, name


def test_traced_form_float32_close_to_float64_reference():
    q, k, v = _qkv(1, 16, 21, 2, 32, dtype=torch.float32)
    rpb = _rpb(2, 7, dtype=torch.float32)
    ref = neighborhood_attention_2d_reference(*(t.double() for t in (q, k, v)), 7, 2, rpb.double())
    for floor in (False, True):
        out = _neighborhood_attention_2d_traced(q, k, v, 7, 2, rpb, 32**-0.5, 0., floor=floor)
        assert out.dtype == torch.float32
        assert _max_diff(out.double(), ref) < 1e-5


def test_traced_form_is_what_a_compiled_op_runs():
    """Under dynamo the op takes the static-plan form: one graph, no break, the reference's
    result (the backbones' compiled and exported tests in tests/deploy run it at full size)."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    q, k, v = _qkv(1, 11, 13, 2, 3)
    rpb = _rpb(2, 5)
    fn = torch.compile(lambda *t: neighborhood_attention_2d(*t, 5, 2, rpb, 0.5),
                       backend='eager', fullgraph=True)
    with torch.no_grad():
        out = fn(q, k, v)
    assert _max_diff(out, neighborhood_attention_2d_reference(q, k, v, 5, 2, rpb, 0.5)) < 1e-12
    assert counters['stats']['unique_graphs'] == 1
