"""What the analysis tools read of slide attention (:mod:`mmattn.ops.slide`).

* :func:`slide_attention_two_conv` (the released training-time order of the two shift
  convolutions) and :func:`local_attention_unfold` (plain local attention by im2col): the
  formulations the benchmark compares the fast path with;
* ``ATTENTION_PANELS``: what ``tools/analysis/vis_attention.py`` draws of a slide layer;
* :func:`bench_cases`: the cases of ``tools/analysis/benchmark.py --ops slide``.
"""
import torch
import torch.nn.functional as F

from mmattn.ops.common import AttentionPanel
from mmattn.ops.slide import (one_hot_shift_kernel, slide_attention, slide_attention_expanded,
                              slide_attention_reference)

# ------------------------------------------------------- official formulations (benchmark anchors)


def slide_attention_two_conv(q, k, v, fixed, learned, fixed_bias, learned_bias, rpb=None,
                             scale=None):
    """The released training-time order: the one-hot (``fixed``) and the learnable depthwise
    convolutions run separately on k and on v and their outputs are summed, the rpb is added to
    the k*k-expanded keys. Equals :func:`slide_attention` with ``weight = fixed + learned`` and
    ``bias = fixed_bias + learned_bias`` (convolution is linear in its kernel)."""
    b, heads, d, h, w = q.shape
    ks = fixed.shape[-1]
    taps = ks * ks
    scale = d**-0.5 if scale is None else scale

    def expand(x):
        x = x.reshape(b * heads, d, h, w)
        out = F.conv2d(x, fixed, fixed_bias, padding=ks // 2, groups=d) + \
            F.conv2d(x, learned, learned_bias, padding=ks // 2, groups=d)
        return out.view(b, heads, d, taps, h, w)

    keys = expand(k)
    if rpb is not None:
        keys = keys + rpb.view(1, heads, 1, taps, 1, 1)
    attn = ((q * scale).unsqueeze(3) * keys).sum(2, keepdim=True).softmax(3)
    return (attn * expand(v)).sum(3)


def local_attention_unfold(q, k, v, kernel_size=3, rpb=None, scale=None):
    """Plain local attention over the zero-padded k x k window by ``F.unfold`` (im2col) of k
    and v, rpb on the logits: the attention slide attention replaces, and slide attention
    with the one-hot kernel, no bias and no deformed shifting."""
    b, heads, d, h, w = q.shape
    taps = kernel_size * kernel_size
    scale = d**-0.5 if scale is None else scale

    def windows(x):  # (B, heads, d, taps, H, W), zero padded
        return F.unfold(x.reshape(b, heads * d, h, w), kernel_size,
                        padding=kernel_size // 2).view(b, heads, d, taps, h, w)

    logits = ((q * scale).unsqueeze(3) * windows(k)).sum(2)
    if rpb is not None:
        logits = logits + rpb.view(1, heads, taps, 1, 1)
    return (logits.softmax(2).unsqueeze(2) * windows(v)).sum(3)


# ------------------------------------------------------ attention panels and benchmark cases


def slide_panels(module, args, locate, captures):
    """The k x k window of the query (deformed shifting merged in) and its attention weights,
    recomputed by :func:`slide_attention_reference` from the layer's parameters."""
    x = args[0]
    if x.dim() == 3:  # the token layout (B, H*W, C) with hw_shape, as mmdet's PVT blocks call it
        x = x.view(x.shape[0], *args[1], x.shape[-1])
    m = module
    b, h, w, c = x.shape
    qkv = m.qkv(x).permute(0, 3, 1, 2).reshape(b, m.num_heads, 3, m.head_dim, h, w)
    weight, bias = m.merged_kernel()
    rpb = m.relative_position_bias_table
    _, attn = slide_attention_reference(*qkv.unbind(2), weight, bias,
                                        None if rpb is None else rpb.view(m.num_heads, -1),
                                        m.scale, return_weights=True)
    qy, qx = locate((h, w))
    ks, window, weights = m.kernel_size, torch.zeros(h, w), torch.zeros(h, w)
    for tap, value in enumerate(attn[0, :, :, qy, qx].mean(0).tolist()):
        y, x_ = qy + tap // ks - ks // 2, qx + tap % ks - ks // 2
        if 0 <= y < h and 0 <= x_ < w:  # border taps read zero padding
            window[y, x_], weights[y, x_] = 1, value
    return [AttentionPanel('window', f'slide window k={ks} (deformed shifting merged in)',
                           window),
            AttentionPanel('weights', 'slide attention weights of the query', weights)]


ATTENTION_PANELS = {'SlideAttention': slide_panels}

# Slide-Swin-T's slide stages, head width 32, k = 3: stage 1 at 224x224 (ImageNet) and stages
# 1-2 of an 800x1216 detection input. (B, C, H, W); heads = C / 32.
BENCH_KERNEL_SIZE = 3
BENCH_HEAD_DIM = 32
BENCH_SIZES = [(1, 96, 56, 56), (1, 96, 200, 304), (1, 192, 100, 152)]
BENCH_QUICK_SIZES = [(1, 64, 13, 17)]

# op 'slide k=3 train' (one-hot and learnable kernels, the learnable ones trained) and op
# 'slide k=3 deploy' (after reparameterize(): one merged kernel). Each impl takes
# (q, k, v, rpb, *kernels): train kernels (fixed, learned, fixed_bias, learned_bias), deploy
# kernels (merged, merged_bias).
BENCH_IMPLS = {
    'slide k=3 train': {
        'mmattn': lambda q, k, v, rpb, f, lw, fb, lb: slide_attention(q, k, v, f + lw, fb + lb,
                                                                     rpb),
        'expanded 1-conv': lambda q, k, v, rpb, f, lw, fb, lb: slide_attention_expanded(
            q, k, v, f + lw, fb + lb, rpb),
        'official 2-conv': lambda q, k, v, rpb, f, lw, fb, lb: slide_attention_two_conv(
            q, k, v, f, lw, fb, lb, rpb),
        'unfold': lambda q, k, v, rpb, *kernels: local_attention_unfold(
            q, k, v, BENCH_KERNEL_SIZE, rpb),
    },
    'slide k=3 deploy': {
        'mmattn deploy': lambda q, k, v, rpb, w, b: slide_attention(q, k, v, w, b, rpb),
        'unfold': lambda q, k, v, rpb, *kernels: local_attention_unfold(
            q, k, v, BENCH_KERNEL_SIZE, rpb),
    },
}


def _bench_build(impl, size, device, deploy):
    b, c, h, w = size

    def build():
        gen = torch.Generator().manual_seed(0)
        heads, ks, d = c // BENCH_HEAD_DIM, BENCH_KERNEL_SIZE, BENCH_HEAD_DIM
        taps = ks * ks
        q, k, v = (torch.randn(b, heads, d, h, w, generator=gen) for _ in range(3))
        rpb = torch.randn(heads, taps, generator=gen) * .02
        fixed = one_hot_shift_kernel(d, ks)
        learned = torch.rand(d * taps, 1, ks, ks, generator=gen) - .5
        biases = [torch.rand(d * taps, generator=gen) - .5 for _ in range(2)]
        inputs = [t.to(device).requires_grad_() for t in (q, k, v, rpb)]
        if deploy:
            merged = (fixed + learned, biases[0] + biases[1])
            inputs += [t.to(device).requires_grad_() for t in merged]
        else:  # the one-hot weight is frozen, its bias and the learnable path train
            inputs += [fixed.to(device), learned.to(device).requires_grad_()] + \
                [t.to(device).requires_grad_() for t in biases]
        return impl, inputs

    return build


def bench_cases(device='cpu', quick=False):
    """Slide attention's fast path (training form with both kernels, deploy form with the
    merged one) against the expanded one-conv form, the released two-conv order and unfold
    local attention; see :func:`~mmattn.ops.common.check_bench_case`."""
    cases = []
    for size in BENCH_QUICK_SIZES if quick else BENCH_SIZES:
        for op, impls in BENCH_IMPLS.items():
            for name, impl in impls.items():
                cases.append(dict(op=op, impl=name, size='x'.join(map(str, size)),
                                  build=_bench_build(impl, size, device, 'deploy' in op)))
    return cases
