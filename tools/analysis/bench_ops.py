#!/usr/bin/env python
"""Neighborhood attention: mmattn's tiled fast path vs unfold (im2col) vs dense SDPA + mask.

For every size and dilation: forward time (no grad), forward+backward time (grads for q, k, v,
rpb; backward of ``out.sum()``), both the median of ``--repeat`` runs after one warm-up, and
peak memory. All three implementations compute NATTEN's op (kernel 7, rpb, default scale) on
the same float32 inputs; all are checked against the reference on a small float64 case first,
and each measured forward output against the first implementation's (1e-4).

- fast: :func:`mmattn.ops.neighborhood.neighborhood_attention_2d` (tiles + chunked matmuls).
- unfold: ``F.unfold`` of K and V over every window start, then each query's (border-clamped)
  window is picked: K*K copies of K and V, the way the pre-NATTEN pure-torch NAT code worked.
- dense: ``F.scaled_dot_product_attention`` over all H*W keys with an additive (H*W)^2 bias per
  head (rpb on the neighbours, -inf elsewhere). Skipped when its estimated memory exceeds
  ``--dense-limit-gb``.

Peak memory (CPU, Linux): every (implementation, size, dilation, mode) runs once in a fresh
Python process, which makes a warm-up call on a tiny input, allocates its inputs, resets its RSS
high-water mark (``/proc/self/clear_refs``) and reports ``VmHWM - VmRSS`` around one call:
everything the call keeps resident at its peak (output, saved tensors, temporaries, allocator
slack), nothing from other runs. The dense path builds its bias inside every call.

    python tools/analysis/bench_ops.py --threads 2 --out-dir bench_out
    python tools/analysis/bench_ops.py --sizes 1x64x56x56 --repeat 5 --no-memory
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from mmattn.ops.neighborhood import (neighborhood_attention_2d,
                                     neighborhood_attention_2d_reference)

DEFAULT_SIZES = '1x64x56x56,1x64x200x304,1x128x100x152'
IMPLS = ('fast', 'unfold', 'dense')


def device_description() -> str:
    """CPU model, core count, torch version and threads, for the header of every table."""
    cpu = platform.processor() or 'unknown CPU'
    if osp.exists('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    return (f'CPU {cpu} ({os.cpu_count()} logical CPUs visible), torch {torch.__version__}, '
            f'{torch.get_num_threads()} threads')


def parse_size(text: str) -> tuple:
    """'BxCxHxW' (or 'CxHxW', B = 1) -> (B, C, H, W)."""
    dims = tuple(int(x) for x in text.lower().split('x'))
    if len(dims) == 3:
        dims = (1, ) + dims
    if len(dims) != 4:
        raise argparse.ArgumentTypeError(f'size {text!r} is not BxCxHxW')
    return dims


def _axis_windows(length: int, kernel_size: int, dilation: int) -> tuple:
    """Per position: window start (original coordinates) and the K rpb indices (spec 2.3/2.4)."""
    i = torch.arange(length)
    g, p = i % dilation, i // dilation
    n = (length - g + dilation - 1) // dilation
    s = torch.minimum((p - kernel_size // 2).clamp(min=0), n - kernel_size)
    offsets = s[:, None] + torch.arange(kernel_size) - p[:, None] + kernel_size - 1
    return g + dilation * s, offsets


def unfold_neighborhood_attention_2d(q, k, v, kernel_size, dilation=1, rpb=None, scale=None):
    """The im2col anchor; same arguments and layout as ``neighborhood_attention_2d``."""
    b, h, w, heads, dim = q.shape
    ks = kernel_size
    scale = dim**-0.5 if scale is None else scale
    start_r, off_r = _axis_windows(h, ks, dilation)
    start_c, off_c = _axis_windows(w, ks, dilation)

    def windows(x):  # -> (B, heads, D, K*K, H, W)
        x = x.permute(0, 3, 4, 1, 2).reshape(b, heads * dim, h, w)
        x = F.unfold(x, ks, dilation=dilation)
        x = x.view(b, heads, dim, ks * ks, h - (ks - 1) * dilation, w - (ks - 1) * dilation)
        return x.index_select(4, start_r).index_select(5, start_c)

    logits = torch.einsum('bhdij,bhdkij->bhijk', q.permute(0, 3, 4, 1, 2) * scale, windows(k))
    if rpb is not None:
        logits = logits + rpb[:, off_r[:, None, :, None], off_c[None, :, None, :]].reshape(
            heads, h, w, ks * ks)
    out = torch.einsum('bhijk,bhdkij->bhijd', logits.softmax(-1), windows(v))
    return out.permute(0, 2, 3, 1, 4)


def dense_bytes(b: int, heads: int, h: int, w: int, train: bool, itemsize: int = 4) -> int:
    """Rough memory of the dense path: the bias plus 2 (forward) or 4 (train) score matrices."""
    n2 = (h * w)**2
    return heads * n2 * itemsize + (4 if train else 2) * b * heads * n2 * itemsize


def dense_neighborhood_attention_2d(q, k, v, kernel_size, dilation=1, rpb=None, scale=None):
    """Full attention with an additive (heads, H*W, H*W) neighbourhood bias, through SDPA."""
    b, h, w, heads, dim = q.shape
    ks = kernel_size
    start_r, off_r = _axis_windows(h, ks, dilation)
    start_c, off_c = _axis_windows(w, ks, dilation)
    rows = start_r[:, None] + dilation * torch.arange(ks)  # (H, K) neighbour rows
    cols = start_c[:, None] + dilation * torch.arange(ks)
    keys = (rows[:, None, :, None] * w + cols[None, :, None, :]).reshape(h * w, ks * ks)
    table = q.new_zeros(heads, 2 * ks - 1, 2 * ks - 1) if rpb is None else rpb
    values = table[:, off_r[:, None, :, None], off_c[None, :, None, :]].reshape(
        heads, h * w, ks * ks)
    bias = q.new_full((heads, h * w, h * w), float('-inf')).scatter(
        2, keys.expand(heads, -1, -1), values)
    qf, kf, vf = (t.reshape(b, h * w, heads, dim).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(qf, kf, vf, attn_mask=bias, scale=scale)
    return out.transpose(1, 2).reshape(b, h, w, heads, dim)


FUNCS = {
    'fast': neighborhood_attention_2d,
    'unfold': unfold_neighborhood_attention_2d,
    'dense': dense_neighborhood_attention_2d,
}


def make_inputs(size: tuple, head_dim: int, kernel_size: int, requires_grad: bool, seed=0):
    """q, k, v (B, H, W, heads, head_dim) and rpb (heads, 2K-1, 2K-1), float32."""
    b, c, h, w = size
    gen = torch.Generator().manual_seed(seed)
    heads = c // head_dim
    q, k, v = (torch.randn(b, h, w, heads, head_dim, generator=gen) for _ in range(3))
    rpb = torch.randn(heads, 2 * kernel_size - 1, 2 * kernel_size - 1, generator=gen) * 0.02
    return [t.requires_grad_(requires_grad) for t in (q, k, v, rpb)]


def call(impl: str, inputs: list, kernel_size: int, dilation: int, train: bool):
    """One forward (no grad) or forward+backward of ``impl``; returns the output."""
    q, k, v, rpb = inputs
    if not train:
        with torch.no_grad():
            return FUNCS[impl](q, k, v, kernel_size, dilation, rpb)
    for t in inputs:
        t.grad = None
    out = FUNCS[impl](q, k, v, kernel_size, dilation, rpb)
    out.sum().backward()
    return out


def time_call(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _status_bytes(field: str) -> int:
    with open('/proc/self/status') as f:
        line = next(line for line in f if line.startswith(field + ':'))
    return int(line.split()[1]) * 1024


def probe_peak(impl, size, dilation, train, kernel_size, head_dim) -> int:
    """In this process: peak RSS growth (bytes) of one call. Meant for a fresh process.

    A call on a tiny input first initialises the libraries (thread pools, BLAS buffers), whose
    one-off allocations would otherwise dominate small sizes.
    """
    small = (1, size[1], kernel_size * dilation, kernel_size * dilation)
    call(impl, make_inputs(small, head_dim, kernel_size, train), kernel_size, dilation, train)
    inputs = make_inputs(size, head_dim, kernel_size, requires_grad=train)
    try:  # reset the high-water mark to the current RSS (Linux >= 4.0)
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass
    before = _status_bytes('VmRSS')
    call(impl, inputs, kernel_size, dilation, train)
    return max(0, _status_bytes('VmHWM') - before)


def peak_memory(impl, size, dilation, train, kernel_size, head_dim, threads) -> int:
    """Peak RSS growth (bytes) of one call, measured in a fresh Python process."""
    cmd = [sys.executable, osp.abspath(__file__), '--probe', impl, 'x'.join(map(str, size)),
           str(dilation), 'train' if train else 'fwd', '--kernel-size', str(kernel_size),
           '--head-dim', str(head_dim)]
    if threads:
        cmd += ['--threads', str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])['peak_bytes']


def check_equal(kernel_size: int = 3, dilation: int = 2) -> None:
    """All implementations == the reference on a small float64 case (odd sizes, rpb)."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 13, 17, 2, 4, generator=gen, dtype=torch.float64)
               for _ in range(3))
    rpb = torch.randn(2, 2 * kernel_size - 1, 2 * kernel_size - 1, generator=gen,
                      dtype=torch.float64)
    ref = neighborhood_attention_2d_reference(q, k, v, kernel_size, dilation, rpb)
    for name, fn in FUNCS.items():
        torch.testing.assert_close(fn(q, k, v, kernel_size, dilation, rpb), ref, msg=name)


def benchmark(sizes, dilations=(1, 4), repeat=3, kernel_size=7, head_dim=32, impls=IMPLS,
              memory=True, dense_limit_gb=8.0, threads=None, log=print) -> list:
    """Measure every (size, dilation, impl); returns one dict per table row."""
    rows = []
    for size in sizes:
        b, c, h, w = size
        heads = c // head_dim
        for dilation in dilations:
            if min(h, w) < kernel_size * dilation:
                log(f'skip {size} dilation {dilation}: smaller than kernel*dilation')
                continue
            first_out = None
            for impl in impls:
                row = dict(size=size, heads=heads, dilation=dilation, impl=impl)
                need = max(dense_bytes(b, heads, h, w, train) for train in (False, True))
                if impl == 'dense' and need > dense_limit_gb * 2**30:
                    row['skipped'] = f'skipped ({need / 2**30:.1f} GB)'
                    rows.append(row)
                    log(f'{size} d={dilation} {impl}: {row["skipped"]}')
                    continue
                for train in (False, True):
                    inputs = make_inputs(size, head_dim, kernel_size, requires_grad=train)
                    key = 'fwd+bwd' if train else 'fwd'
                    row[key] = time_call(
                        lambda: call(impl, inputs, kernel_size, dilation, train), repeat)
                    if not train:
                        out = call(impl, inputs, kernel_size, dilation, False)
                        if first_out is None:
                            first_out = out
                        else:
                            torch.testing.assert_close(out, first_out, rtol=1e-4, atol=1e-4)
                    if memory:
                        row[f'mem {key}'] = peak_memory(impl, size, dilation, train,
                                                        kernel_size, head_dim, threads)
                rows.append(row)
                log(f'{size} d={dilation} {impl}: fwd {row["fwd"] * 1e3:.1f} ms, fwd+bwd '
                    f'{row["fwd+bwd"] * 1e3:.1f} ms')
    fast = {(r['size'], r['dilation']): r for r in rows if r['impl'] == 'fast'}
    for r in rows:
        ref = fast.get((r['size'], r['dilation']))
        if ref is not None and 'fwd' in r and 'fwd' in ref:
            r['ratio'] = (r['fwd'] / ref['fwd'], r['fwd+bwd'] / ref['fwd+bwd'])
    return rows


def format_table(rows: list, header: str = '') -> str:
    """Markdown table of ``benchmark`` rows (times in ms, memory in MB)."""
    mem = any('mem fwd' in r for r in rows)
    cols = ['size (BxCxHxW)', 'heads', 'dilation', 'impl', 'fwd ms', 'fwd+bwd ms']
    cols += ['peak MB fwd', 'peak MB fwd+bwd'] if mem else []
    cols += ['time / fast (fwd, fwd+bwd)']
    lines = [header, ''] if header else []
    lines += ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for r in rows:
        cells = ['x'.join(map(str, r['size'])), str(r['heads']), str(r['dilation']), r['impl']]
        if 'skipped' in r:
            cells += [r['skipped']] + ['-'] * (len(cols) - 5)
        else:
            cells += [f'{r["fwd"] * 1e3:.1f}', f'{r["fwd+bwd"] * 1e3:.1f}']
            if mem:
                cells += [f'{r["mem fwd"] / 2**20:.0f}', f'{r["mem fwd+bwd"] / 2**20:.0f}']
            ratio = r.get('ratio')
            cells += [f'{ratio[0]:.1f}x, {ratio[1]:.1f}x' if ratio else '-']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', default=DEFAULT_SIZES,
                        help=f'comma-separated BxCxHxW (default {DEFAULT_SIZES})')
    parser.add_argument('--dilations', default='1,4')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None, help='torch threads')
    parser.add_argument('--out-dir', default='bench_out')
    parser.add_argument('--kernel-size', type=int, default=7)
    parser.add_argument('--head-dim', type=int, default=32)
    parser.add_argument('--impls', default=','.join(IMPLS))
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory runs')
    parser.add_argument('--dense-limit-gb', type=float, default=8.0)
    parser.add_argument('--probe', nargs=4, metavar=('IMPL', 'SIZE', 'DILATION', 'MODE'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        impl, size, dilation, mode = args.probe
        peak = probe_peak(impl, parse_size(size), int(dilation), mode == 'train',
                          args.kernel_size, args.head_dim)
        print(json.dumps(dict(peak_bytes=peak)))
        return

    sizes = [parse_size(s) for s in args.sizes.split(',')]
    dilations = tuple(int(d) for d in args.dilations.split(','))
    impls = tuple(args.impls.split(','))
    unknown = set(impls) - set(IMPLS)
    if unknown:
        parser.error(f'unknown --impls {sorted(unknown)}; choose from {IMPLS}')
    check_equal()
    header = (f'Neighborhood attention, kernel {args.kernel_size}, head_dim {args.head_dim}, '
              f'rpb, float32. Device: {device_description()}. Times: median of {args.repeat} '
              'after a warm-up. Peak MB: RSS growth of one call in a fresh process.')
    rows = benchmark(sizes, dilations, args.repeat, args.kernel_size, args.head_dim, impls,
                     not args.no_memory, args.dense_limit_gb, args.threads,
                     log=lambda msg: print(msg, file=sys.stderr, flush=True))
    table = format_table(rows, header)
    print(table)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'bench_ops.md'), 'w') as f:
        f.write(table)


if __name__ == '__main__':
    main()
