"""Slide attention op: fast path == definition (the released SlideAttention of
LeapLabTHU/Slide-Transformer, slide_swin.py), re-parameterisation into one depthwise conv."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmengine.model import BaseModule

from mmattn.analysis.ops.slide import local_attention_unfold, slide_attention_two_conv
from mmattn.ops.slide import (SlideAttention, _shifted, one_hot_shift_kernel, slide_attention,
                              slide_attention_expanded, slide_attention_reference)

F64 = torch.float64


def _inputs(b, heads, d, h, w, ks=3, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=F64).requires_grad_(grad)

    q, k, v = (rand(b, heads, d, h, w) for _ in range(3))
    weight = rand(d * ks * ks, 1, ks, ks)
    return q, k, v, weight, rand(d * ks * ks), rand(heads, ks * ks)


def test_one_hot_taps_are_row_major_shifts_with_zero_borders():
    # with the fixed one-hot kernel alone, tap i reads the neighbour at (i//k - 1, i%k - 1)
    x = torch.arange(1., 21., dtype=F64).view(1, 1, 1, 4, 5)
    q = torch.zeros_like(x)
    ones = torch.ones(1, 1, 1, 4, 5, dtype=F64)
    for i in range(9):
        dy, dx = i // 3 - 1, i % 3 - 1
        # v = x, all logits 0 -> uniform weights; probe one tap by zeroing the others' kernels
        weight = one_hot_shift_kernel(1, 3) * (torch.arange(9) == i).view(9, 1, 1, 1)
        out = slide_attention(q, ones, x, weight.to(F64))
        expected = _shifted(x, dy, dx) / 9  # zero padding, no masking: padded taps count
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    y = x[0, 0, 0]
    assert _shifted(x, -1, -1)[0, 0, 0, 1, 1] == y[0, 0]  # tap 0 at (1, 1) is up-left
    assert _shifted(x, 1, 0)[0, 0, 0, 3].abs().sum() == 0  # below the last row: zeros


# (B, heads, head_dim, H, W, kernel): odd / non-square / 1-pixel-wide maps, maps smaller than
# the kernel, kernel 1 and 5
CASES = [(2, 3, 4, 7, 5, 3), (1, 2, 5, 1, 6, 3), (1, 1, 3, 2, 2, 5), (2, 2, 2, 9, 4, 5),
         (1, 3, 2, 5, 3, 1)]


@pytest.mark.parametrize('b, heads, d, h, w, ks', CASES)
@pytest.mark.parametrize('with_bias', [True, False])
def test_fast_equals_reference_forward_backward(b, heads, d, h, w, ks, with_bias):
    q, k, v, weight, bias, rpb = _inputs(b, heads, d, h, w, ks, seed=h * w + ks)
    if not with_bias:
        bias = rpb = None
    scale = 0.41 if ks == 5 else None
    out = slide_attention(q, k, v, weight, bias, rpb, scale)
    ref = slide_attention_reference(q, k, v, weight, bias, rpb, scale)
    assert out.shape == (b, heads, d, h, w)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    leaves = [t for t in (q, k, v, weight, bias, rpb) if t is not None]
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, grad_out)
    ref_grads = torch.autograd.grad(ref, leaves, grad_out)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-11)


@pytest.mark.parametrize('b, heads, d, h, w, ks', CASES[:3])
def test_expanded_path_equals_reference(b, heads, d, h, w, ks):
    # the expanded one-conv form is what slide_attention runs with attention dropout
    q, k, v, weight, bias, rpb = _inputs(b, heads, d, h, w, ks, seed=7)
    leaves = (q, k, v, weight, bias, rpb)
    out = slide_attention_expanded(q, k, v, weight, bias, rpb)
    ref = slide_attention_reference(q, k, v, weight, bias, rpb)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(out)
    for g, r in zip(torch.autograd.grad(out, leaves, grad_out),
                    torch.autograd.grad(ref, leaves, grad_out)):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-11)


def test_dropout_uses_the_expanded_path():
    q, k, v, weight, bias, rpb = _inputs(1, 2, 3, 5, 4, seed=2, grad=False)
    torch.manual_seed(0)
    out = slide_attention(q, k, v, weight, bias, rpb, dropout_p=0.5)
    torch.manual_seed(0)
    expected = slide_attention_expanded(q, k, v, weight, bias, rpb, 3**-0.5, 0.5)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert not torch.allclose(out, slide_attention(q, k, v, weight, bias, rpb))


@pytest.mark.parametrize('trainable', [('q', ), ('k', 'v'), ('weight', ), ('bias', 'rpb')])
def test_fast_path_gradients_of_a_subset_of_inputs(trainable):
    # the backward skips the gradients nobody asked for (e.g. the frozen one-hot weight)
    names = ('q', 'k', 'v', 'weight', 'bias', 'rpb')
    tensors = dict(zip(names, _inputs(2, 2, 3, 4, 6, seed=11, grad=False)))
    leaves = [tensors[name].requires_grad_() for name in trainable]
    args = [tensors[name] for name in names]
    out = slide_attention(*args)
    ref = slide_attention_reference(*args)
    grad_out = torch.randn_like(out)
    for g, r in zip(torch.autograd.grad(out, leaves, grad_out),
                    torch.autograd.grad(ref, leaves, grad_out)):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-11)


def test_fast_path_keeps_no_expanded_keys_for_backward():
    # the point of the shift loop: autograd keeps q, the padded k and v, the kernels and the
    # (heads x taps x H x W) weights, never the k*k-expanded keys or values
    b, heads, d, h, w = 1, 2, 8, 12, 10
    q, k, v, weight, bias, rpb = _inputs(b, heads, d, h, w, seed=1)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        slide_attention(q, k, v, weight, bias, rpb)
    per_map = b * heads * d * h * w
    padded = b * heads * d * (h + 2) * (w + 2)
    assert max(saved) <= padded < 9 * per_map
    assert sum(saved) <= 3 * padded + b * heads * 9 * h * w + weight.numel() + 200


def test_gradcheck_fast_path():
    q, k, v, weight, bias, rpb = _inputs(1, 2, 2, 4, 3, 3, seed=3)
    assert torch.autograd.gradcheck(slide_attention, (q, k, v, weight, bias, rpb))


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 2), heads=st.integers(1, 3), d=st.integers(1, 4), h=st.integers(1, 9),
       w=st.integers(1, 9), ks=st.sampled_from([1, 3, 5]), seed=st.integers(0, 2**16))
def test_property_fast_equals_reference(b, heads, d, h, w, ks, seed):
    q, k, v, weight, bias, rpb = _inputs(b, heads, d, h, w, ks, seed=seed, grad=False)
    torch.testing.assert_close(slide_attention(q, k, v, weight, bias, rpb),
                               slide_attention_reference(q, k, v, weight, bias, rpb),
                               rtol=0, atol=1e-12)


def test_reference_weights_and_rpb_on_keys():
    q, k, v, weight, bias, rpb = _inputs(1, 2, 3, 4, 4, seed=5, grad=False)
    out, attn = slide_attention_reference(q, k, v, weight, bias, rpb, return_weights=True)
    assert attn.shape == (1, 2, 9, 4, 4)
    torch.testing.assert_close(attn.sum(2), torch.ones(1, 2, 4, 4, dtype=F64))
    # the released rpb is added to the keys: a key-side bias is T[h,i] * sum_c q_c on the logits,
    # not T[h,i]
    plain = slide_attention_reference(q, k, v, weight, bias, None, return_weights=True)[1]
    logit_bias = torch.log(attn) - torch.log(plain)
    logit_bias = logit_bias - logit_bias[:, :, :1]  # softmax is shift invariant per query
    qsum = (q * 3**-0.5).sum(2, keepdim=True)
    expected = (rpb.view(1, 2, 9, 1, 1) - rpb.view(1, 2, 9, 1, 1)[:, :, :1]) * qsum
    torch.testing.assert_close(logit_bias, expected, rtol=0, atol=1e-10)


def _module(dim=12, heads=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    m = SlideAttention(dim, heads, **kwargs).double()
    with torch.no_grad():  # non-trivial learnable path and biases (dep_conv.bias is trainable)
        m.dep_conv.bias.normal_()
        m.relative_position_bias_table.normal_()
    return m


def _official_two_path(m, x):
    """The released forward order: two conv outputs summed, rpb added to the keys."""
    b, h, w, c = x.shape
    heads, d = m.num_heads, m.head_dim
    qkv = m.qkv(x).permute(0, 3, 1, 2).reshape(b * heads, 3 * d, h, w)
    q, k, v = qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:]
    q = (q * d**-0.5).reshape(b, heads, d, 1, h, w)
    keys = (m.dep_conv(k) + m.dep_conv1(k)).reshape(b, heads, d, 9, h, w)
    values = (m.dep_conv(v) + m.dep_conv1(v)).reshape(b, heads, d, 9, h, w)
    attn = (q * (keys + m.relative_position_bias_table)).sum(2, keepdim=True).softmax(3)
    out = (attn * values).sum(3).reshape(b, c, h, w).permute(0, 2, 3, 1)
    return m.proj(out)


def test_module_equals_released_two_path_formulation():
    m = _module()
    x = torch.randn(2, 5, 7, 12, dtype=F64)
    torch.testing.assert_close(m(x), _official_two_path(m, x), rtol=0, atol=1e-12)


def test_parameters_follow_the_release():
    m = SlideAttention(96, 3)
    assert m.dep_conv.weight.shape == m.dep_conv1.weight.shape == (288, 1, 3, 3)
    assert not m.dep_conv.weight.requires_grad
    assert m.dep_conv.bias.requires_grad and m.dep_conv1.weight.requires_grad
    assert m.relative_position_bias_table.shape == (1, 3, 1, 9, 1, 1)
    assert m.shift_kernel_is_one_hot()
    assert m.dep_conv1.weight.abs().max() <= 1 / 3 and m.dep_conv1.weight.abs().sum() > 0


@pytest.mark.parametrize('dtype, atol', [(F64, 1e-13), (torch.float32, 1e-5)])
def test_reparameterize_equals_two_paths(dtype, atol):
    m = _module().to(dtype).eval()
    x = torch.randn(2, 6, 5, 12, dtype=dtype)
    before = m(x)
    w0, w1 = m.dep_conv.weight.clone(), m.dep_conv1.weight.clone()
    m.reparameterize()
    assert m.deploy and m.dep_conv1 is None
    assert 'dep_conv1.weight' not in m.state_dict()
    torch.testing.assert_close(m.dep_conv.weight, w0 + w1)
    torch.testing.assert_close(m(x), before, rtol=0, atol=atol)


def test_deployed_module_loads_both_layouts():
    m = _module().eval()
    x = torch.randn(1, 4, 4, 12, dtype=F64)
    expected = m(x)
    two_path = m.state_dict()
    deployed = SlideAttention(12, 3, deploy=True).double().eval()
    deployed.load_state_dict(two_path, strict=True)
    torch.testing.assert_close(deployed(x), expected, rtol=0, atol=1e-13)
    m.reparameterize()
    again = SlideAttention(12, 3, deploy=True).double().eval()
    again.load_state_dict(m.state_dict(), strict=True)
    torch.testing.assert_close(again(x), expected, rtol=0, atol=1e-13)


class _Wrapper(BaseModule):

    def __init__(self):
        super().__init__(init_cfg=[dict(type='Kaiming', layer='Conv2d'),
                                   dict(type='Constant', val=0.5, layer='Linear')])
        self.attn = SlideAttention(8, 2)

    def init_weights(self):
        super().init_weights()
        self.attn.reset_shift_kernel()


def test_one_hot_survives_init_routines():
    w = _Wrapper()
    w.attn.dep_conv.weight.data.normal_()  # what a Kaiming init_cfg alone does
    assert not w.attn.shift_kernel_is_one_hot()
    w.init_weights()
    assert w.attn.shift_kernel_is_one_hot()
    assert w.attn.qkv.weight.eq(0.5).all()  # the init_cfg did run


@pytest.mark.parametrize('kwargs, match', [
    (dict(embed_dims=10, num_heads=3), 'divisible'),
    (dict(embed_dims=12, num_heads=3, kernel_size=4), 'odd integer'),
    (dict(embed_dims=12, num_heads=3, kernel_size=0), 'odd integer'),
])
def test_module_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SlideAttention(**kwargs)


def test_functional_rejects_bad_shapes():
    q, k, v, weight, bias, rpb = _inputs(1, 2, 3, 4, 4, grad=False)
    with pytest.raises(ValueError, match='5-D'):
        slide_attention(q[0], k, v, weight)
    with pytest.raises(ValueError, match='depthwise kernel'):
        slide_attention(q, k, v, weight[:9])
    with pytest.raises(ValueError, match='rpb'):
        slide_attention(q, k, v, weight, bias, rpb[:1])


@pytest.mark.parametrize('b, heads, d, h, w, ks', CASES[:3])
def test_official_two_conv_form_equals_reference(b, heads, d, h, w, ks):
    # the benchmark's anchor: one-hot and learnable convs run separately and summed
    q, k, v, learned, bias, rpb = _inputs(b, heads, d, h, w, ks, seed=5)
    fixed = one_hot_shift_kernel(d, ks).to(F64)
    fixed_bias = torch.randn_like(bias)
    out = slide_attention_two_conv(q, k, v, fixed, learned, fixed_bias, bias, rpb)
    ref = slide_attention_reference(q, k, v, fixed + learned, fixed_bias + bias, rpb)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize('b, heads, d, h, w, ks', CASES[:3])
def test_unfold_local_attention_is_slide_attention_with_the_one_hot_kernel(b, heads, d, h, w, ks):
    # the benchmark's unfold anchor: the local attention slide attention replaces (without the
    # rpb, which it adds to the logits and slide attention to the keys)
    q, k, v = _inputs(b, heads, d, h, w, ks, seed=6)[:3]
    ref = slide_attention_reference(q, k, v, one_hot_shift_kernel(d, ks).to(F64))
    torch.testing.assert_close(local_attention_unfold(q, k, v, ks), ref, rtol=0, atol=1e-12)


def test_benchmark_cases_compute_the_same_op():
    from mmattn.analysis.ops.slide import bench_cases
    outs = {}
    for case in bench_cases(quick=True):
        fn, inputs = case['build']()
        outs[case['op'], case['impl']] = fn(*inputs).detach()
        assert outs[case['op'], case['impl']].shape == inputs[0].shape
    train, deploy = outs['slide k=3 train', 'mmattn'], outs['slide k=3 deploy', 'mmattn deploy']
    torch.testing.assert_close(outs['slide k=3 train', 'official 2-conv'], train)
    torch.testing.assert_close(outs['slide k=3 train', 'expanded 1-conv'], train)
    torch.testing.assert_close(deploy, train)


def test_fast_path_under_bf16_autocast():
    # fp32 kernels with bf16 q, k, v (what a Linear under autocast gives): one dtype inside,
    # gradients in the leaves' own dtypes, and close to the fp32 result
    q, k, v, weight, bias, rpb = (t.detach().float().requires_grad_()
                                  for t in _inputs(1, 2, 8, 6, 7, seed=4, grad=False))
    expected = slide_attention(q, k, v, weight, bias, rpb)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = slide_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), weight, bias, rpb)
    assert out.dtype == torch.bfloat16
    assert (out.float() - expected).norm() / expected.norm() < 0.02
    out.float().sum().backward()
    assert weight.grad.dtype == rpb.grad.dtype == q.grad.dtype == torch.float32
    assert torch.isfinite(weight.grad).all() and torch.isfinite(q.grad).all()
