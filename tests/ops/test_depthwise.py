"""depthwise_conv2d: the forward is F.conv2d's, the custom CPU backward equals autograd of it."""
import pytest
import torch
import torch.nn.functional as F

from mmattn.ops.depthwise import DepthwiseConv2d, _DepthwiseConv2dFunction, depthwise_conv2d


def _native(x, weight, bias):
    return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=x.shape[1])


# (N, C, H, W, k, channels_last, bias): odd sizes, maps smaller than the kernel (every output
# touches the zero border), batch > 1, both memory formats
CASES = [(2, 6, 9, 11, 5, False, True), (1, 4, 7, 5, 7, True, True), (3, 5, 4, 13, 5, True, False),
         (2, 3, 2, 3, 7, False, True), (1, 8, 1, 1, 5, True, True)]


@pytest.mark.parametrize('n,c,h,w,k,channels_last,with_bias', CASES)
def test_gradients_equal_native_float64(n, c, h, w, k, channels_last, with_bias):
    gen = torch.Generator().manual_seed(n * 100 + c * 10 + k)
    x = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c, 1, k, k, dtype=torch.float64, generator=gen)
    bias = torch.randn(c, dtype=torch.float64, generator=gen) if with_bias else None
    grad = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen)
    params = [t.requires_grad_() for t in (x, weight, bias) if t is not None]

    out = depthwise_conv2d(x, weight, bias)
    assert out.grad_fn.name() == '_DepthwiseConv2dFunctionBackward'
    ours = torch.autograd.grad((out * grad).sum(), params)
    expected = torch.autograd.grad((_native(x, weight, bias) * grad).sum(), params)
    assert torch.equal(out, _native(x, weight, bias))
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradcheck():
    gen = torch.Generator().manual_seed(0)
    args = (torch.randn(2, 3, 5, 6, dtype=torch.float64, generator=gen).requires_grad_(),
            torch.randn(3, 1, 5, 5, dtype=torch.float64, generator=gen).requires_grad_(),
            torch.randn(3, dtype=torch.float64, generator=gen).requires_grad_())
    assert torch.autograd.gradcheck(_DepthwiseConv2dFunction.apply, args)


def test_partial_gradients_float32():
    """Only the weight, or only the input, needs a gradient (frozen layers, a frozen input)."""
    x = torch.randn(1, 16, 23, 17)
    conv = DepthwiseConv2d(16, 7)
    out = conv(x)  # the input needs no gradient: weight and bias only
    grads = torch.autograd.grad(out.square().sum(), (conv.weight, conv.bias))
    expected = torch.autograd.grad(_native(x, conv.weight, conv.bias).square().sum(),
                                   (conv.weight, conv.bias))
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
    x.requires_grad_()
    conv.requires_grad_(False)
    grad_x, = torch.autograd.grad(conv(x).square().sum(), x)
    expected_x, = torch.autograd.grad(_native(x, conv.weight, conv.bias).square().sum(), x)
    torch.testing.assert_close(grad_x, expected_x)


def test_plain_conv_where_the_native_backward_is_kept():
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    three = DepthwiseConv2d(4, 3)
    assert three(x).grad_fn.name() == 'ConvolutionBackward0'  # 3x3: oneDNN's backward is fast
    five = DepthwiseConv2d(4, 5)
    with torch.no_grad():
        assert torch.equal(five(x), _native(x, five.weight, five.bias))
    traced = torch.jit.trace(five, torch.randn(1, 4, 6, 6))
    assert 'aten::_convolution' in str(traced.graph) and 'PythonOp' not in str(traced.graph)


def test_module_is_a_conv2d_with_the_same_parameters():
    torch.manual_seed(3)
    ours = DepthwiseConv2d(8, 5, bias=False)
    torch.manual_seed(3)
    stock = torch.nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
    assert isinstance(ours, torch.nn.Conv2d)
    assert ours.state_dict().keys() == stock.state_dict().keys()
    assert torch.equal(ours.weight, stock.weight)


def test_bad_kernel():
    with pytest.raises(ValueError, match='odd'):
        depthwise_conv2d(torch.randn(1, 4, 5, 5), torch.randn(4, 1, 4, 4))
    with pytest.raises(ValueError, match='C=4'):
        depthwise_conv2d(torch.randn(1, 4, 5, 5), torch.randn(3, 1, 5, 5))


def test_contiguous_nchw_copies_every_layout_exactly():
    from mmattn.ops.depthwise import _contiguous_nchw
    gen = torch.Generator().manual_seed(2)
    nhwc = torch.randn(2, 5, 7, 9, generator=gen)
    for x in (nhwc.permute(0, 3, 1, 2),  # channels-last: the 2-D transposed copy per image
              nhwc[..., :4].permute(0, 3, 1, 2),  # a channel slice of NHWC rows: strided
              nhwc.permute(0, 3, 1, 2).contiguous()):  # already NCHW
        out = _contiguous_nchw(x)
        assert out.is_contiguous() and torch.equal(out, x)
