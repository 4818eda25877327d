"""Dual-ViT attention pieces: SDPA fast paths == references written from the official
model's definition (semantic-token init, DualBlock, semantic tokens between stages, MergeBlock).

Everything in float64 with randomised layer scales (U(0.5, 1.5) instead of the official 1e-6,
which would hide almost any bug) and LayerNorm affines away from 1/0, so a wrong eps,
token order, head split or missing projection shows.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmattn.ops.dual import (DualPathAttention, MergeAttention, SemanticTokenInit,
                             dual_path_attention_reference, merge_attention_reference,
                             multi_head_attention, multi_head_attention_reference, pooled_grid,
                             semantic_init_reference)

DT = torch.float64


def randomise(module, seed=0):
    """LayerNorm weights 1 +- 0.2 with non-zero biases, every layer scale ~U(0.5, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        for name, p in module.named_parameters():
            if name.split('.')[-1].startswith('gamma'):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name == 'query':
                p.copy_(torch.randn(p.shape, generator=g))
    return module.to(DT).eval()


def rand(*shape, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=DT).requires_grad_(grad)


def assert_same_grads(fast_out, ref_out, leaves, atol=1e-10):
    """Equal outputs, and equal gradients of a random projection of the outputs."""
    if isinstance(fast_out, torch.Tensor):
        fast_out, ref_out = (fast_out, ), (ref_out, )
    loss_f, loss_r = 0, 0
    for i, (f, r) in enumerate(zip(fast_out, ref_out)):
        torch.testing.assert_close(f, r, atol=atol, rtol=0)
        w = rand(*f.shape, seed=100 + i, grad=False)
        loss_f, loss_r = loss_f + (f * w).sum(), loss_r + (r * w).sum()
    grads_f = torch.autograd.grad(loss_f, leaves)
    grads_r = torch.autograd.grad(loss_r, leaves)
    for gf, gr in zip(grads_f, grads_r):
        torch.testing.assert_close(gf, gr, atol=atol, rtol=0)



@pytest.mark.parametrize('b,tq,tk,c,heads', [(2, 13, 7, 24, 3), (1, 1, 5, 8, 1), (3, 9, 1, 6, 2)])
def test_multi_head_attention_matches_reference(b, tq, tk, c, heads):
    q, k, v = rand(b, tq, c, seed=1), rand(b, tk, c, seed=2), rand(b, tk, c, seed=3)
    assert_same_grads(multi_head_attention(q, k, v, heads),
                      multi_head_attention_reference(q, k, v, heads), (q, k, v))


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 2), tq=st.integers(1, 17), tk=st.integers(1, 17),
       heads=st.integers(1, 4), head_dim=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_attention_pieces_property(b, tq, tk, heads, head_dim, seed):
    c = heads * head_dim
    q, k, v = (rand(b, t, c, seed=seed + i, grad=False) for i, t in enumerate((tq, tk, tk)))
    out, weights = multi_head_attention_reference(q, k, v, heads, return_weights=True)
    torch.testing.assert_close(multi_head_attention(q, k, v, heads), out, atol=1e-12, rtol=0)
    assert weights.shape == (b, heads, tq, tk)
    torch.testing.assert_close(weights.sum(-1), torch.ones(b, heads, tq, dtype=DT))
    # the whole dual-path attention with N = tq pixels and M = tk semantic tokens
    module = randomise(DualPathAttention(c, heads), seed=seed)
    for fast, ref in zip(module(q, k), dual_path_attention_reference(q, k, *module.op_args())):
        torch.testing.assert_close(fast, ref, atol=1e-10, rtol=0)


def test_head_split_is_contiguous_chunks():
    # head h must read channels [h*d, (h+1)*d) of q, k and v (the official
    # layout: the first C channels are K (or Q), heads are contiguous chunks)
    q, k, v = rand(1, 4, 6, seed=1), rand(1, 5, 6, seed=2), rand(1, 5, 6, seed=3)
    out = multi_head_attention(q, k, v, 2)
    torch.testing.assert_close(out[..., 3:], multi_head_attention(q[..., 3:], k[..., 3:],
                                                                  v[..., 3:], 1))


@pytest.mark.parametrize('hw', [(16, 19), (56, 56), (7, 13), (30, 8)])
def test_semantic_init_matches_reference(hw):
    c = 16
    module = randomise(SemanticTokenInit(c), seed=4)
    x = rand(2, hw[0] * hw[1], c, seed=5)
    gh, gw = pooled_grid(*hw)
    fast = module(x, hw)
    assert fast.shape == (2, gh * gw, c)
    ref, weights = semantic_init_reference(x, hw, *module.op_args(), return_weights=True)
    assert weights.shape == (2, 1, gh * gw, gh * gw)
    assert_same_grads(fast, ref, (x, module.query, module.kv.weight, module.se[0].weight))


def test_semantic_init_details():
    c = 8
    module = randomise(SemanticTokenInit(c), seed=6)
    # 8x8 -> 8x8 bicubic is the identity: the 224-px classification quirk (no resize at M=64)
    # gives the same tokens as the downstream code's unconditional resize
    assert torch.equal(module.resized_query((8, 8)), module.query)
    # remainder rows/columns (H1 mod 7, W1 mod 7) are dropped from the pooled summary
    # (official AvgPool 7/7)
    hw = (17, 23)
    x = rand(1, hw[0] * hw[1], c, seed=7, grad=False)
    x2 = x.clone().view(1, *hw, c)
    x2[:, 14:] += 5
    x2[:, :, 21:] -= 3
    torch.testing.assert_close(module(x, hw), module(x2.view(1, -1, c), hw), atol=0, rtol=0)
    # the batch shares the queries but not the summaries
    xb = torch.cat([x, rand(1, hw[0] * hw[1], c, seed=8, grad=False)])
    torch.testing.assert_close(module(xb, hw)[:1], module(x, hw), atol=1e-12, rtol=0)


def test_dual_path_attention_matches_reference():
    c, heads, hw, m = 24, 3, (5, 7), 6
    module = randomise(DualPathAttention(c, heads, drop_path=0.2), seed=9)
    xn, z = rand(2, hw[0] * hw[1], c, seed=10), rand(2, m, c, seed=11)
    ref = dual_path_attention_reference(xn, z, *module.op_args(), return_weights=True)
    weights = ref[2]
    assert weights['semantic_self'].shape == (2, heads, m, m)
    assert weights['semantic_from_pixel'].shape == (2, heads, m, 35)
    assert weights['pixel_from_semantic'].shape == (2, heads, 35, m)
    assert_same_grads(module(xn, z), ref[:2],
                      (xn, z, module.gamma2, module.qkv_proxy[1].weight, module.kv.weight))


def test_dual_path_attention_drop_path_in_training_matches_reference():
    # stochastic depth of the three semantic updates: the reference draws as the op draws
    c, heads = 16, 2
    module = randomise(DualPathAttention(c, heads, drop_path=0.5), seed=17).train()
    xn, z = rand(8, 10, c, seed=18), rand(8, 4, c, seed=19)
    torch.manual_seed(3)
    fast = module(xn, z)
    torch.manual_seed(3)
    ref = dual_path_attention_reference(xn, z, *module.op_args())
    assert_same_grads(fast, ref, (xn, z, module.gamma1, module.mlp_proxy[0].weight))
    torch.manual_seed(3)
    eval_out = dual_path_attention_reference(xn, z, *module.eval().op_args())
    assert not torch.allclose(eval_out[1], ref[1])  # some updates were dropped


def test_dual_path_attention_pixels_see_updated_semantics():
    # pixels attend to z after all three semantic updates (official order): changing the semantic
    # MLP changes the pixel output
    c = 8
    module = randomise(DualPathAttention(c, 2), seed=12)
    xn, z = rand(1, 12, c, seed=13, grad=False), rand(1, 3, c, seed=14, grad=False)
    out = module(xn, z)[0]
    with torch.no_grad():
        module.gamma3.mul_(2)
    assert not torch.allclose(out, module(xn, z)[0])


def test_dual_path_attention_drop_path_is_its_own():
    module = DualPathAttention(8, 2, drop_path=0.3)
    assert module.drop_path.drop_prob == 0.3
    assert isinstance(DualPathAttention(8, 2).drop_path, nn.Identity)  # no keys either way
    assert set(DualPathAttention(8, 2).state_dict()) == set(module.state_dict())


def test_merge_attention_matches_reference():
    c, heads = 20, 5
    module = randomise(MergeAttention(c, heads), seed=15)
    t = rand(2, 11, c, seed=16)
    ref, weights = merge_attention_reference(t, *module.op_args(), return_weights=True)
    assert weights.shape == (2, heads, 11, 11)
    assert_same_grads(module(t), ref, (t, module.q.weight, module.kv.bias))


def test_bad_inputs():
    with pytest.raises(ValueError, match='num_heads'):
        multi_head_attention(rand(1, 3, 6), rand(1, 3, 6), rand(1, 3, 6), 4)
    with pytest.raises(ValueError, match='3-D'):
        multi_head_attention(rand(3, 6), rand(1, 3, 6), rand(1, 3, 6), 1)
    with pytest.raises(ValueError, match='agree'):
        multi_head_attention(rand(1, 3, 6), rand(1, 4, 6), rand(1, 3, 6), 1)
    with pytest.raises(ValueError, match='divisible'):
        DualPathAttention(10, 3)
    with pytest.raises(ValueError, match='divisible'):
        MergeAttention(10, 4)
    with pytest.raises(ValueError, match='at least 7x7'):
        SemanticTokenInit(8)(rand(1, 6 * 20, 8), (6, 20))
