"""Slide attention (k = 3, head width 32, key-side rpb): training and deploy forms vs im2col.

Sizes are Slide-Swin-T's slide stages: stage 1 at 224x224 (ImageNet) and stages 1-2 of an
800x1216 detection input. Inputs are (B, heads, 32, H, W) q, k, v plus the shift kernels.

op ``slide k=3 train`` (two kernels, both learnable parameters of the benchmark):
- mmattn: :func:`mmattn.ops.slide.slide_attention` with the kernels summed: a loop over the
  k*k shifts of the padded k and v with small (taps x head_dim) matrix products, never
  building the 9x expanded keys and values (rpb folded into the logits).
- expanded 1-conv: the former fast path (now used only with attention dropout): one grouped
  conv with the summed kernels builds the 9x expanded K and V (in one batch).
- official 2-conv: the released order: the one-hot and the learnable depthwise convs run
  separately on K and on V and are summed, rpb added to the 9x expanded keys.
- unfold: ``F.unfold`` (im2col) of K and V over the same zero-padded 3x3 window, rpb on the
  logits: the local attention slide attention replaces (no deformed shifting).

op ``slide k=3 deploy`` (after ``reparameterize()``: one merged kernel):
- mmattn deploy: :func:`slide_attention` with the merged kernel.
- unfold: as above.
"""
import torch
import torch.nn.functional as F

from mmattn.ops.slide import _slide_attention_dense, one_hot_shift_kernel, slide_attention

KERNEL_SIZE = 3
HEAD_DIM = 32
SIZES = [(1, 96, 56, 56), (1, 96, 200, 304), (1, 192, 100, 152)]
QUICK_SIZES = [(1, 64, 13, 17)]


def mmattn_train(q, k, v, rpb, fixed, learned, fixed_bias, learned_bias):
    return slide_attention(q, k, v, fixed + learned, fixed_bias + learned_bias, rpb)


def expanded_one_conv(q, k, v, rpb, fixed, learned, fixed_bias, learned_bias):
    return _slide_attention_dense(q, k, v, fixed + learned, fixed_bias + learned_bias, rpb,
                                  q.shape[2]**-0.5)


def official_two_conv(q, k, v, rpb, fixed, learned, fixed_bias, learned_bias):
    b, heads, d, h, w = q.shape
    taps = KERNEL_SIZE * KERNEL_SIZE

    def expand(x):
        x = x.reshape(b * heads, d, h, w)
        out = F.conv2d(x, fixed, fixed_bias, padding=1, groups=d) + \
            F.conv2d(x, learned, learned_bias, padding=1, groups=d)
        return out.view(b, heads, d, taps, h, w)

    keys = expand(k) + rpb.view(1, heads, 1, taps, 1, 1)
    attn = ((q * d**-0.5).unsqueeze(3) * keys).sum(2, keepdim=True).softmax(3)
    return (attn * expand(v)).sum(3)


def mmattn_deploy(q, k, v, rpb, merged, merged_bias):
    return slide_attention(q, k, v, merged, merged_bias, rpb)


def unfold_local_attention(q, k, v, rpb, *kernels):
    b, heads, d, h, w = q.shape
    taps = KERNEL_SIZE * KERNEL_SIZE

    def windows(x):  # (B, heads, d, taps, H, W), zero padded
        return F.unfold(x.reshape(b, heads * d, h, w), KERNEL_SIZE, padding=1).view(
            b, heads, d, taps, h, w)

    logits = ((q * d**-0.5).unsqueeze(3) * windows(k)).sum(2) + rpb.view(1, heads, taps, 1, 1)
    return (logits.softmax(2).unsqueeze(2) * windows(v)).sum(3)


def _build(impl, size, device, deploy):
    b, c, h, w = size

    def build():
        gen = torch.Generator().manual_seed(0)
        heads, taps = c // HEAD_DIM, KERNEL_SIZE * KERNEL_SIZE
        q, k, v = (torch.randn(b, heads, HEAD_DIM, h, w, generator=gen) for _ in range(3))
        rpb = torch.randn(heads, taps, generator=gen) * .02
        fixed = one_hot_shift_kernel(HEAD_DIM, KERNEL_SIZE)
        learned = (torch.rand(HEAD_DIM * taps, 1, KERNEL_SIZE, KERNEL_SIZE, generator=gen) - .5)
        biases = [torch.rand(HEAD_DIM * taps, generator=gen) - .5 for _ in range(2)]
        inputs = [t.to(device).requires_grad_() for t in (q, k, v, rpb)]
        if deploy:
            kernels = [(fixed + learned), biases[0] + biases[1]]
            inputs += [t.to(device).requires_grad_() for t in kernels]
        else:  # the one-hot weight is frozen, its bias and the learnable path train
            inputs += [fixed.to(device), learned.to(device).requires_grad_()] + \
                [t.to(device).requires_grad_() for t in biases]
        return impl, inputs

    return build


def cases(device='cpu', quick=False):
    out = []
    for size in QUICK_SIZES if quick else SIZES:
        label = 'x'.join(map(str, size))
        for op, deploy, impls in (
                ('slide k=3 train', False, [('mmattn', mmattn_train),
                                            ('expanded 1-conv', expanded_one_conv),
                                            ('official 2-conv', official_two_conv),
                                            ('unfold', unfold_local_attention)]),
                ('slide k=3 deploy', True, [('mmattn deploy', mmattn_deploy),
                                            ('unfold', unfold_local_attention)])):
            for name, impl in impls:
                out.append(dict(op=op, impl=name, size=label,
                                build=_build(impl, size, device, deploy)))
    return out
