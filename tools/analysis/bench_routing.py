#!/usr/bin/env python
"""Bi-level routing attention: mmattn's fast path vs the official legacy formulation.

The anchor re-states the official legacy op's data movement (spec biformer.md §2.1 step 7-9):
expand K/V to (N, R, R, T, 2C), ``torch.gather`` the top-k regions, permute into heads, then
explicit ``softmax(q k^T) v``. Both run the same region routing; outputs are checked equal.

    python tools/analysis/bench_routing.py --repeat 5
"""
import argparse
import platform
import time

import torch

from mmattn.ops.routing import bi_level_routing_attention, route_regions

# (name, N, H, W, C, heads, n_win, topk): BiFormer-S BRA maps at 800x1344 (COCO, S=16) and
# 512x512 (ADE20K, S=8), already padded to a multiple of n_win.
CASES = [
    ('det stage 1', 1, 208, 336, 64, 2, 16, 1),
    ('det stage 2', 1, 112, 176, 128, 4, 16, 4),
    ('det stage 3', 1, 64, 96, 256, 8, 16, 16),
    ('seg stage 1', 2, 128, 128, 64, 2, 8, 1),
    ('seg stage 3', 2, 32, 32, 256, 8, 8, 16),
]


def gather_anchor(q, k, v, n_win, topk, num_heads):
    n, h, w, c = q.shape
    rh, rw, r = h // n_win, w // n_win, n_win * n_win
    t, d, scale = rh * rw, c // num_heads, c**-0.5

    def regions(x):
        return x.reshape(n, n_win, rh, n_win, rw, -1).permute(0, 1, 3, 2, 4, 5).reshape(n, r, t, -1)

    q_r, kv = regions(q), regions(torch.cat([k, v], -1))
    idx = route_regions(q_r.mean(2), kv[..., :c].mean(2), topk, scale)
    kv_sel = torch.gather(kv.unsqueeze(1).expand(n, r, r, t, 2 * c), 2,
                          idx.view(n, r, topk, 1, 1).expand(n, r, topk, t, 2 * c))
    k_sel, v_sel = kv_sel.split(c, -1)
    k_sel = k_sel.reshape(n * r, topk, t, num_heads, d).permute(0, 3, 4, 1, 2).reshape(
        n * r, num_heads, d, topk * t)
    v_sel = v_sel.reshape(n * r, topk, t, num_heads, d).permute(0, 3, 1, 2, 4).reshape(
        n * r, num_heads, topk * t, d)
    q_h = q_r.reshape(n * r, t, num_heads, d).transpose(1, 2)
    out = torch.softmax((q_h * scale) @ k_sel, -1) @ v_sel
    out = out.transpose(1, 2).reshape(n, n_win, n_win, rh, rw, c).permute(0, 1, 3, 2, 4, 5)
    return out.reshape(n, h, w, c)


def timeit(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                if line.startswith('model name')), platform.processor())
    print(f'device: CPU {cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'float32, median of {args.repeat}')
    print('| case | N,H,W,C | S, topk | anchor fwd+bwd (ms) | mmattn fwd+bwd (ms) | speed-up |')
    print('|---|---|---|---|---|---|')
    for name, n, h, w, c, heads, n_win, topk in CASES:
        torch.manual_seed(0)
        q, k, v = (torch.randn(n, h, w, c, requires_grad=True) for _ in range(3))
        fast = bi_level_routing_attention(q, k, v, n_win, topk, heads)[0]
        torch.testing.assert_close(fast, gather_anchor(q, k, v, n_win, topk, heads), rtol=1e-4,
                                   atol=1e-4)

        def run(fn):
            return lambda: fn().sum().backward()

        t_anchor = timeit(run(lambda: gather_anchor(q, k, v, n_win, topk, heads)), args.repeat)
        t_fast = timeit(run(lambda: bi_level_routing_attention(q, k, v, n_win, topk, heads)[0]),
                        args.repeat)
        print(f'| {name} | {n},{h},{w},{c} | {n_win}, {topk} | {t_anchor * 1e3:.1f} | '
              f'{t_fast * 1e3:.1f} | {t_anchor / t_fast:.2f}x |')


if __name__ == '__main__':
    main()
