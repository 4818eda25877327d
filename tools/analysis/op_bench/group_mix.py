"""Group-mix attention: mmattn's channel-major fast path vs the spec reference vs softmax SDPA.

- mmattn: :class:`mmattn.ops.group_mix.GroupMixAttention` (eval mode: BN running statistics).
- reference: :func:`group_mix_attention_reference` on the same module's tensors (token-major, one
  segment and one head at a time, spec §2); same output.
- softmax SDPA: a *different*, quadratic op over the same tokens, to show what the factorized
  attention avoids: the same qkv and output projections around ``F.scaled_dot_product_attention``
  with the same 8 heads of C/10 channels over all H*W tokens (no aggregators; v's last fifth
  passes through). Its max abs diff is not a correctness check.
  Left out of the detection stage-0/1 maps (60800 / 15200 tokens), where one fp32 call costs tens
  of seconds on a CPU (the seg 64x64 -> 128x128 pair shows its 16x per 4x tokens instead).

Sizes (spec §5): GroupMixFormer-S stage maps of an 800x1216 COCO image (stride 4/8/16) and of a
512x512 ADE20K crop (stride 4), plus 256x256 to show the scaling.
"""
import torch
import torch.nn.functional as F

from mmattn.ops.group_mix import NUM_HEADS, GroupMixAttention, group_mix_attention_reference

# (label, B, C, H, W, with SDPA)
SIZES = [
    ('det stage 0 1x80x200x304', 1, 80, 200, 304, False),
    ('det stage 1 1x160x100x152', 1, 160, 100, 152, False),
    ('det stage 2 1x320x50x76', 1, 320, 50, 76, True),
    ('seg stage 0 1x80x128x128', 1, 80, 128, 128, True),
    ('seg 256 stage 0 1x80x64x64', 1, 80, 64, 64, True),
]
QUICK_SIZES = [('quick 2x20x12x9', 2, 20, 12, 9, True)]


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
        module = GroupMixAttention(c).to(device).eval()
        x = torch.randn(b, h * w, c, device=device, requires_grad=True)
        if impl == 'mmattn':
            return (lambda t: module(t, (h, w))), [x]
        if impl == 'reference':
            state = {**dict(module.named_parameters()), **dict(module.named_buffers())}
            return (lambda t: group_mix_attention_reference(t, (h, w), state)), [x]
        return (lambda t: _sdpa(module, t, (h, w))), [x]

    return build


def cases(device='cpu', quick=False):
    out = []
    for size in QUICK_SIZES if quick else SIZES:
        impls = ['mmattn', 'reference'] + (['softmax SDPA (quadratic)'] if size[5] else [])
        for impl in impls:
            out.append(dict(op='group-mix attention', impl=impl, size=size[0],
                            build=_build(impl, size, device)))
    return out
