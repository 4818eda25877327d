"""What the analysis tools read of neighborhood attention (:mod:`mmattn.ops.neighborhood`).

* :func:`neighborhood_attention_2d_traced`, :func:`neighborhood_attention_2d_unfold` and
  :func:`neighborhood_attention_2d_dense`: the op (same arguments) in its traced static-plan
  form run eagerly, the im2col way and as dense SDPA with a bias, the benchmark's other
  formulations;
* ``ATTENTION_PANELS``: what ``tools/analysis/vis_attention.py`` draws of an NA layer;
* :func:`bench_cases`: the cases of ``tools/analysis/benchmark.py --ops neighborhood``.
"""
import torch
import torch.nn.functional as F

from mmattn.ops.common import AttentionPanel
from mmattn.ops.neighborhood import (_neighborhood_attention_2d_traced, _windows_1d,
                                     neighborhood_attention_2d,
                                     neighborhood_attention_2d_reference)

# --------------------------------------------------------- other formulations (benchmark anchors)


def neighborhood_attention_2d_unfold(q, k, v, kernel_size, dilation=1, rpb=None, scale=None):
    """:func:`neighborhood_attention_2d` (same arguments) the im2col way: ``F.unfold`` of K and
    V over every window start, then each query's border-clamped window picked: K*K copies of K
    and V, as the pre-NATTEN pure-PyTorch NAT code worked."""
    b, h, w, heads, dim = q.shape
    ks = kernel_size
    scale = dim**-0.5 if scale is None else scale
    rows, off_r = _windows_1d(h, ks, dilation, q.device)
    cols, off_c = _windows_1d(w, ks, dilation, q.device)

    def windows(x):  # -> (B, heads, D, K*K, H, W)
        x = x.permute(0, 3, 4, 1, 2).reshape(b, heads * dim, h, w)
        x = F.unfold(x, ks, dilation=dilation)
        x = x.view(b, heads, dim, ks * ks, h - (ks - 1) * dilation, w - (ks - 1) * dilation)
        return x.index_select(4, rows[:, 0]).index_select(5, cols[:, 0])  # window starts

    logits = torch.einsum('bhdij,bhdkij->bhijk', q.permute(0, 3, 4, 1, 2) * scale, windows(k))
    if rpb is not None:
        logits = logits + rpb[:, off_r[:, None, :, None], off_c[None, :, None, :]].reshape(
            heads, h, w, ks * ks)
    out = torch.einsum('bhijk,bhdkij->bhijd', logits.softmax(-1), windows(v))
    return out.permute(0, 2, 3, 1, 4)


def neighborhood_attention_2d_traced(q, k, v, kernel_size, dilation=1, rpb=None, scale=None):
    """:func:`neighborhood_attention_2d` (same arguments) in the static-plan form it takes
    when traced (``torch.compile``, ``torch.export``, ONNX export), here run eagerly."""
    scale = q.shape[-1]**-0.5 if scale is None else scale
    table = q.new_zeros(1, 2 * kernel_size - 1, 2 * kernel_size - 1) if rpb is None else rpb
    return _neighborhood_attention_2d_traced(q, k, v, kernel_size, dilation, table, scale, 0.)


def neighborhood_attention_2d_dense(q, k, v, kernel_size, dilation=1, rpb=None, scale=None):
    """:func:`neighborhood_attention_2d` (same arguments) as full attention through SDPA with an
    additive (heads, H*W, H*W) bias: the rpb on each query's neighbours, ``-inf`` elsewhere."""
    b, h, w, heads, dim = q.shape
    ks = kernel_size
    rows, off_r = _windows_1d(h, ks, dilation, torch.device('cpu'))
    cols, off_c = _windows_1d(w, ks, dilation, torch.device('cpu'))
    table = q.new_zeros(heads, 2 * ks - 1, 2 * ks - 1) if rpb is None else rpb
    keys = (rows[:, None, :, None] * w + cols[None, :, None, :]).reshape(h * w, ks * ks)
    values = table[:, off_r[:, None, :, None], off_c[None, :, None, :]].reshape(
        heads, h * w, ks * ks)
    bias = q.new_full((heads, h * w, h * w), float('-inf')).scatter(
        2, keys.to(q.device).expand(heads, -1, -1), values)
    qf, kf, vf = (t.reshape(b, h * w, heads, dim).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(qf, kf, vf, attn_mask=bias, scale=scale)
    return out.transpose(1, 2).reshape(b, h, w, heads, dim)


# ------------------------------------------------------ attention panels and benchmark cases


def neighborhood_panels(module, args, locate, captures):
    """The (dilated) neighbourhood of the query and its attention weights, recomputed by
    :func:`neighborhood_attention_2d_reference` from the layer's parameters."""
    m, x = module, args[0]
    b, h, w, c = x.shape
    q, k, v = m.qkv(x).view(b, h, w, 3, m.num_heads, c // m.num_heads).unbind(3)
    _, attn = neighborhood_attention_2d_reference(q, k, v, m.kernel_size, m.dilation, m.rpb,
                                                  m.scale, return_weights=True)
    qy, qx = locate((h, w))
    row = attn[0, :, qy * w + qx].mean(0).view(h, w)
    return [
        AttentionPanel('neighbourhood',
                       f'NA neighbourhood: K={m.kernel_size}, dilation {m.dilation}',
                       (row > 0).float()),
        AttentionPanel('weights', 'NA attention weights of the query', row),
    ]


ATTENTION_PANELS = {'NeighborhoodAttention': neighborhood_panels}

# NAT's kernel 7, head width 32, with the rpb; (B, C, H, W), heads = C / 32; 200x304 is the
# stage-1 map of an 800x1216 detection input. The dense form is left out where it would need
# more than BENCH_DENSE_LIMIT_BYTES.
BENCH_KERNEL_SIZE = 7
BENCH_HEAD_DIM = 32
BENCH_SIZES = [(1, 64, 56, 56), (1, 64, 200, 304), (1, 128, 100, 152)]
BENCH_DILATIONS = (1, 4)
BENCH_QUICK_SIZES = [(1, 64, 21, 23)]
BENCH_QUICK_DILATIONS = (1, 2)
BENCH_DENSE_LIMIT_BYTES = 4 * 2**30


def _dense_bytes(b, heads, h, w, itemsize=4):
    """Rough training memory of the dense form: the bias plus 4 score matrices."""
    return (1 + 4 * b) * heads * (h * w)**2 * itemsize


def _bench_build(impl, size, dilation, device):
    b, c, h, w = size

    def build():
        gen = torch.Generator().manual_seed(0)
        heads, ks = c // BENCH_HEAD_DIM, BENCH_KERNEL_SIZE
        q, k, v = (torch.randn(b, h, w, heads, BENCH_HEAD_DIM, generator=gen) for _ in range(3))
        rpb = torch.randn(heads, 2 * ks - 1, 2 * ks - 1, generator=gen) * .02
        inputs = [t.to(device).requires_grad_() for t in (q, k, v, rpb)]
        return (lambda q, k, v, rpb: impl(q, k, v, ks, dilation, rpb)), inputs

    return build


def bench_cases(device='cpu', quick=False):
    """The tiled fast path against its traced (static-plan) form run eagerly, the unfold
    (im2col) form and, where it fits, the dense SDPA form; see
    :func:`~mmattn.ops.common.check_bench_case`."""
    cases = []
    for size in BENCH_QUICK_SIZES if quick else BENCH_SIZES:
        b, c, h, w = size
        impls = {'mmattn': neighborhood_attention_2d,
                 'traced form (eager)': neighborhood_attention_2d_traced,
                 'unfold': neighborhood_attention_2d_unfold}
        if _dense_bytes(b, c // BENCH_HEAD_DIM, h, w) <= BENCH_DENSE_LIMIT_BYTES:
            impls['dense SDPA'] = neighborhood_attention_2d_dense
        for dilation in BENCH_QUICK_DILATIONS if quick else BENCH_DILATIONS:
            for name, impl in impls.items():
                cases.append(dict(op=f'NA k={BENCH_KERNEL_SIZE} d={dilation}', impl=name,
                                  size='x'.join(map(str, size)),
                                  build=_bench_build(impl, size, dilation, device)))
    return cases
