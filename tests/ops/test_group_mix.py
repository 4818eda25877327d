"""Group-mix attention op: fast path == the definition (reference) == the benchmark anchor."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmattn.analysis.ops.group_mix import GroupMixAttentionStraightforward
from mmattn.ops.group_mix import (GroupMixAttention, default_scale, factorized_attention,
                                  group_mix_attention_reference)

F64 = torch.float64


def _randomise(module, seed=0):
    """Values that make every tensor matter: BN stats and affine params away from 0/1, non-zero
    conv biases (the default init has zero biases and identity BN)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith('num_batches_tracked'):
                continue
            r = torch.randn(t.shape, generator=g, dtype=F64)
            if name.endswith('running_var'):
                t.copy_(1 + 0.5 * r.abs())
            elif name.endswith(('norm.weight', 'running_mean')):
                t.copy_((1 if name.endswith('weight') else 0) + 0.2 * r)
            elif t.dim() == 1:
                t.copy_(0.2 * r)
            else:
                t.copy_(r / (t[0].numel()**0.5))
    return module


def _module(c, seed=0, **kwargs):
    return _randomise(GroupMixAttention(c, **kwargs).double(), seed)


def _ref(m, x, hw, training=False, return_weights=False, qkv_weight=None):
    """The reference with ``m``'s parameters, its aggregators' BatchNorm from the formula."""
    args = list(m.reference_args(training))
    if qkv_weight is not None:
        args[0] = qkv_weight
    return group_mix_attention_reference(x, hw, *args, return_weights=return_weights)


def _tokens(b, h, w, c, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, h * w, c, generator=g, dtype=F64).requires_grad_()


def _check_equal(m, x, hw, training):
    m.train(training)
    out = m(x, hw)
    ref = _ref(m, x, hw, training)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    grad = torch.randn_like(out)
    params = [p for p in m.parameters()]
    got = torch.autograd.grad(out, [x] + params, grad)
    want = torch.autograd.grad(ref, [x] + params, grad)
    names = ['x'] + [n for n, _ in m.named_parameters()]
    for name, a, b in zip(names, got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11, msg=name)


# (B, H, W, C): odd sizes, 1-pixel rows/columns (every conv sees only borders), 7x7 kernels
# larger than the map, C=10 (head width 1) up to C=40 (the M model's stage 0)
@pytest.mark.parametrize('b, h, w, c', [(2, 5, 7, 20), (1, 1, 9, 10), (3, 11, 2, 30),
                                        (1, 4, 4, 40), (2, 13, 3, 10)])
@pytest.mark.parametrize('training', [False, True])
def test_fast_equals_reference_forward_backward(b, h, w, c, training):
    m = _module(c, seed=h * w + c)
    _check_equal(m, _tokens(b, h, w, c, seed=b + c), (h, w), training)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       c=st.sampled_from([10, 20, 30]), training=st.booleans(), qkv_bias=st.booleans(),
       scale=st.sampled_from([None, 0.37]))
def test_property_fast_equals_reference(b, h, w, c, training, qkv_bias, scale):
    m = _module(c, seed=h + 7 * w, qkv_bias=qkv_bias, qk_scale=scale)
    x = _tokens(b, h, w, c, seed=b * h * w)
    m.train(training)
    with torch.no_grad():
        ref = _ref(m, x, (h, w), training)
        torch.testing.assert_close(m(x, (h, w)), ref, rtol=0, atol=1e-12)


def test_train_mode_pools_bn_statistics_over_q_k_v():
    b, h, w, c = 2, 4, 5, 20
    seg = c // 5
    m = _module(c, seed=3)
    x = _tokens(b, h, w, c)
    seen = []
    for agg in m.aggregators:
        agg.norm.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape))
    old_mean = m.aggregators[0].norm.running_mean.clone()
    old_var = m.aggregators[0].norm.running_var.clone()
    m.train()
    with torch.no_grad():
        m(x, (h, w))
        # one BN call per segment, over the 3B stacked q/k/v images
        assert seen == [(3 * b, seg, h, w)] * 4
        # s0 (identity aggregator): BN input = channels [0, seg) of q, k and v together
        qkv = torch.nn.functional.linear(x, m.qkv.weight, m.qkv.bias)
        s0 = torch.cat([qkv[..., i * c:i * c + seg].reshape(-1, seg) for i in range(3)])
        assert s0.shape == (3 * b * h * w, seg)
        torch.testing.assert_close(m.aggregators[0].norm.running_mean,
                                   0.9 * old_mean + 0.1 * s0.mean(0))
        torch.testing.assert_close(m.aggregators[0].norm.running_var,
                                   0.9 * old_var + 0.1 * s0.var(0, unbiased=True))
        # the pooling is observable: in training, q's normalisation (hence the attention
        # weights, which depend on q and k only) moves when only the v projection changes
        out = _ref(m, x, (h, w), True, return_weights=True)[1]
        qkv_weight = m.qkv.weight * torch.cat(
            [torch.ones(2 * c, 1), torch.full((c, 1), 2.)]).to(F64)
        moved = _ref(m, x, (h, w), True, True, qkv_weight)[1]
        fixed = _ref(m, x, (h, w), False, True, qkv_weight)[1]
        assert (moved - out).abs().max() > 1e-3
        torch.testing.assert_close(
            fixed, _ref(m, x, (h, w), False, return_weights=True)[1], rtol=0, atol=0)


def test_attention_weights_reproduce_the_factorized_term():
    """weights @ v == the factorized (linear) term: the associativity the fast path relies on."""
    b, h, w, c = 2, 3, 5, 20
    m = _module(c, seed=5).eval()
    x = _tokens(b, h, w, c)
    with torch.no_grad():
        out, weights = _ref(m, x, (h, w), return_weights=True)
        torch.testing.assert_close(out, m(x, (h, w)), rtol=0, atol=1e-12)
        assert weights.shape == (b, 8, h * w, h * w)
        q, k, v = torch.randn(3, b, 8, 2, h * w, dtype=F64).unbind(0)
        dense = (q.transpose(-1, -2) @ k.softmax(-1)) @ v.transpose(-1, -2)  # (B, 8, N, Ch)
        torch.testing.assert_close(factorized_attention(q, k, v).transpose(-1, -2), dense)


def test_scale_and_head_grouping_constants():
    # (C // 8) ** -0.5 with the block's width C (the official value), not head_dim ** -0.5
    for c, scale in ((40, 0.4472), (80, 0.3162), (320, 0.1581), (480, 0.1291)):
        assert round(default_scale(c), 4) == scale
        assert round(GroupMixAttention(c).scale, 4) == scale
    m = GroupMixAttention(320)
    # CRPE: 2/3/3 heads of Ch=32 with kernels 3/5/7; aggregators: identity, 3, 5, 7 on seg=64
    assert [(cv.in_channels, cv.kernel_size[0]) for cv in m.crpe] == [(64, 3), (96, 5), (96, 7)]
    assert m.aggregators[0].conv is None
    assert [a.conv.dw.kernel_size[0] for a in m.aggregators[1:]] == [3, 5, 7]
    assert m.local_branch.conv.dw.in_channels == 192 and m.local_branch.norm.eps == 1e-5


def test_linear_in_tokens_no_quadratic_tensor():
    """Peak intermediate size grows linearly: no (N, N) tensor is ever allocated."""
    m = GroupMixAttention(20).eval()
    sizes = []
    for h in (16, 64):
        x = torch.randn(1, h * h, 20)
        largest = [0]

        def pack(t):
            largest[0] = max(largest[0], t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            m(x.requires_grad_(), (h, h)).sum().backward()
        sizes.append(largest[0])
    assert sizes[1] <= 16 * sizes[0] * 1.01  # 16x the tokens, at most 16x the largest tensor


@pytest.mark.parametrize('c', [0, 15, 25, 32, 10.0, True])
def test_bad_embed_dims(c):
    with pytest.raises(ValueError, match='embed_dims divisible by 10'):
        GroupMixAttention(c)


def test_bad_token_shape():
    m = GroupMixAttention(20)
    with pytest.raises(ValueError, match=r'expected tokens \(B, 4\*5, 20\)'):
        m(torch.randn(1, 21, 20), (4, 5))


@pytest.mark.parametrize('x_grad', [True, False])
def test_fast_equals_reference_gradients_without_qkv_bias(x_grad):
    """_SegmentedQKV's hand-written backward: no bias, and x with or without a gradient."""
    b, h, w, c = 2, 6, 5, 20
    m = _module(c, seed=11, qkv_bias=False).train()
    x = _tokens(b, h, w, c, seed=4).requires_grad_(x_grad)
    out = m(x, (h, w))
    ref = _ref(m, x, (h, w), training=True)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    grad = torch.randn_like(out)
    inputs = ([x] if x_grad else []) + list(m.parameters())
    for a, e in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(ref, inputs, grad)):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-11)


def test_segmented_qkv_matches_linear_gradcheck():
    """The segmented projection is the qkv Linear with its columns dealt out per segment,
    values and gradients (including unused outputs, whose gradient arrives as None)."""
    from mmattn.ops.group_mix import _SegmentedQKV
    seg, c, bn = 2, 10, 7
    g = torch.Generator().manual_seed(0)
    x = torch.randn(bn, c, generator=g, dtype=F64, requires_grad=True)
    weight = torch.randn(15 * seg, c, generator=g, dtype=F64, requires_grad=True)
    bias = torch.randn(15 * seg, generator=g, dtype=F64, requires_grad=True)
    outs = _SegmentedQKV.apply(x, weight, bias, seg)
    full = torch.nn.functional.linear(x, weight, bias).view(bn, 3, 5, seg)  # [q | k | v]
    for i in range(4):
        torch.testing.assert_close(outs[i], full[:, :, i].transpose(0, 1), rtol=0, atol=1e-13)
    torch.testing.assert_close(outs[4], full[:, :, 4].reshape(bn, 3 * seg), rtol=0, atol=1e-13)
    assert torch.autograd.gradcheck(
        lambda *a: _SegmentedQKV.apply(*a, seg)[1:4:2], (x, weight, bias))


@pytest.mark.parametrize('b, h, w, c', [(2, 5, 7, 20), (1, 1, 9, 10), (1, 6, 4, 40)])
@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('qkv_bias', [True, False])
def test_straightforward_anchor_equals_fast_path(b, h, w, c, training, qkv_bias):
    """The benchmark's anchor loads the op's weights (qkv split into q, k, v) and computes the
    same function in float64, forward and backward, BN in train mode included, and updates
    the same running statistics: the op benchmark compares like with like."""
    m = _module(c, seed=h + w + c, qkv_bias=qkv_bias)
    anchor = GroupMixAttentionStraightforward.from_module(m)
    assert anchor.q.weight.dtype == F64 and (anchor.q.bias is None) == (not qkv_bias)
    torch.testing.assert_close(torch.cat([anchor.q.weight, anchor.k.weight, anchor.v.weight]),
                               m.qkv.weight, rtol=0, atol=0)
    m.train(training)
    anchor.train(training)
    x = _tokens(b, h, w, c, seed=c)
    out, want = m(x, (h, w)), anchor(x, (h, w))
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
    grad = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad)[0],
                               torch.autograd.grad(want, x, grad)[0], rtol=0, atol=1e-11)
    for (name, buf), other in zip(m.named_buffers(), anchor.buffers()):
        torch.testing.assert_close(buf, other, rtol=0, atol=1e-12, msg=name)


def test_benchmark_floor_row_is_the_two_projections():
    """Each benchmark size has the anchor and the floor row; the floor computes only the qkv
    and output projections of the op's own module (nothing an implementation could skip)."""
    from mmattn.analysis.ops.group_mix import (BENCH_ANCHOR, BENCH_FLOOR, BENCH_KERNELS,
                                               BENCH_SIZES, bench_cases)
    cases = bench_cases()
    for label, *_ in BENCH_SIZES:
        impls = [case['impl'] for case in cases if case['size'] == label]
        assert impls[:4] == ['mmattn', BENCH_ANCHOR, BENCH_FLOOR, BENCH_KERNELS]
    case = next(case for case in bench_cases(quick=True) if case['impl'] == BENCH_FLOOR)
    fn, (x, ) = case['build']()
    torch.manual_seed(0)  # the module the case built: same seed, same weights
    module = GroupMixAttention(x.shape[-1])
    want = module.proj(module.qkv(x)[..., :x.shape[-1]])
    torch.testing.assert_close(fn(x), want, rtol=0, atol=0)


def test_benchmark_kernels_floor_runs_the_definitions_kernels():
    """The 'definition kernels' floor runs the anchor's convolutions (same weights, same input
    shapes and memory layout classes), gives every parameter of the module a gradient, and its
    BatchNorms use batch statistics in training and running ones in the forward alone."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from mmattn.analysis.ops.group_mix import _definition_kernels

    class Convs(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution.default:
                self.calls.append((tuple(args[0].shape), tuple(args[1].shape)))
            return func(*args, **(kwargs or {}))

    b, c, h, w = 2, 20, 6, 7
    torch.manual_seed(0)
    module = GroupMixAttention(c).train()
    anchor = GroupMixAttentionStraightforward.from_module(module)
    fn, leaves = _definition_kernels(module, b, h, w, 'cpu')
    with Convs() as floor_convs:
        outs = fn(*leaves)
    with Convs() as anchor_convs:
        anchor(torch.randn(b, h * w, c), (h, w))
    assert sorted(floor_convs.calls) == sorted(anchor_convs.calls)
    sum(o.sum() for o in outs).backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None]
    assert not missing
    assert all(t.grad is not None for t in leaves)
    assert module.training
    with torch.no_grad():
        fn(*leaves)
    assert not module.training  # forward alone: BatchNorm with running statistics
