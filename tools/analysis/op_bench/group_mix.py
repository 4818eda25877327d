"""Group-mix attention: mmattn's fast path vs the definition written plainly (the anchor).

- mmattn: :class:`mmattn.ops.group_mix.GroupMixAttention`.
- straightforward: :class:`GroupMixAttentionStraightforward` with the same weights
  (``from_module``): separate q / k / v linears, the q/k/v images stacked NCHW on the batch
  axis, one aggregator per segment, the factorized attention by einsum over the 8 heads, three
  CRPE convs, the non-attention branch. The same numbers (tests/ops/test_group_mix.py checks it
  in float64), so the ratio compares like with like. It plays the part ``official gather`` plays
  for BRA.
- reference: :func:`group_mix_attention_reference` (token-major, one segment and one head at a
  time): same output, the slowest.
- softmax SDPA: a *different*, quadratic op over the same tokens, to show what the factorized
  attention avoids: the same qkv and output projections around ``F.scaled_dot_product_attention``
  with the same 8 heads of C/10 channels over all H*W tokens (no aggregators; v's last fifth
  passes through). Its max abs diff is not a correctness check. Only on the small maps.

Modes: forward runs the modules in eval mode (BatchNorm with running statistics), as inference
does; forward+backward in train mode (BatchNorm with the batch statistics of the stacked q/k/v
images), as training does. Sizes: the GroupMixFormer-S maps of stages 0-3 at 224x224, of stages
0-2 at 512x512 (an ADE20K crop) and at 800x1216 (a COCO image), batch 1 (channels 80, 160, 320,
320 at strides 4, 8, 16, 32).
"""
import torch
import torch.nn.functional as F

from mmattn.ops.group_mix import (NUM_HEADS, GroupMixAttention, GroupMixAttentionStraightforward,
                                  group_mix_attention_reference)

# (label, B, C, H, W, impls besides mmattn and the anchor)
SIZES = [
    ('224 stage 0 1x80x56x56', 1, 80, 56, 56, ()),
    ('224 stage 1 1x160x28x28', 1, 160, 28, 28, ()),
    ('224 stage 2 1x320x14x14', 1, 320, 14, 14, ('softmax SDPA (quadratic)', )),
    ('224 stage 3 1x320x7x7', 1, 320, 7, 7, ()),
    ('512 stage 0 1x80x128x128', 1, 80, 128, 128, ()),
    ('512 stage 1 1x160x64x64', 1, 160, 64, 64, ()),
    ('512 stage 2 1x320x32x32', 1, 320, 32, 32, ('softmax SDPA (quadratic)', )),
    ('800x1216 stage 0 1x80x200x304', 1, 80, 200, 304, ('reference', )),
    ('800x1216 stage 1 1x160x100x152', 1, 160, 100, 152, ()),
    ('800x1216 stage 2 1x320x50x76', 1, 320, 50, 76, ()),
]
QUICK_SIZES = [('quick 2x20x12x9', 2, 20, 12, 9, ('reference', 'softmax SDPA (quadratic)'))]
ANCHOR = 'straightforward'


def _sdpa(module, x, hw):
    b, n, c = x.shape
    attn_dims = c - c // 5  # the same 8 heads of C/10 channels; v's last fifth passes through
    qkv = module.qkv(x).view(b, n, 3, c)
    q, k, v = qkv[..., :attn_dims].reshape(b, n, 3, NUM_HEADS, -1).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, attn_dims)
    return module.proj(torch.cat([out, qkv[:, :, 2, attn_dims:]], -1))


def _build(impl, size, device):
    _, b, c, h, w, _ = size

    def build():
        torch.manual_seed(0)
        module = GroupMixAttention(c).to(device)
        x = torch.randn(b, h * w, c, device=device, requires_grad=True)
        if impl == ANCHOR:
            module = GroupMixAttentionStraightforward.from_module(module)
        if impl == 'reference':
            state = {**dict(module.named_parameters()), **dict(module.named_buffers())}
            return (lambda t: group_mix_attention_reference(
                t, (h, w), state, training=torch.is_grad_enabled())), [x]
        if impl == 'softmax SDPA (quadratic)':
            return (lambda t: _sdpa(module, t, (h, w))), [x]

        def run(t):  # eval for the forward (no grad), train for forward+backward
            return module.train(torch.is_grad_enabled())(t, (h, w))

        return run, [x]

    return build


def cases(device='cpu', quick=False):
    out = []
    for size in QUICK_SIZES if quick else SIZES:
        for impl in ('mmattn', ANCHOR) + size[5]:
            out.append(dict(op='group-mix attention', impl=impl, size=size[0],
                            build=_build(impl, size, device)))
    return out
