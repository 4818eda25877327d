#!/usr/bin/env python
"""Speed and memory of backbones (and of attention ops against their naive anchors), CPU or GPU.

Backbones (default: every mmattn family's headline variant, mmdet's Swin-T and PVTv2-B2) at each
resolution (default 224x224, 512x512, 800x1216), batch 1, float32:

- forward latency (eval, no grad) and forward+backward latency (train mode, backward of the sum
  of all outputs): median of ``--repeat`` timed calls after ``--warmup`` calls, with the spread
  (min..max); CUDA times with events after a synchronize;
- peak memory of one call: on CPU the RSS growth of one call in a fresh process (its
  ``VmHWM - VmRSS`` after a warm-up call on a small input, so one-off library buffers do not
  count); on CUDA ``max_memory_allocated`` above what the model and input already hold;
- MACs from ``get_flops`` (multiply-adds, the papers' "FLOPs") and the achieved forward
  GFLOP/s (2 x MACs / time) against the fp32 GEMM rate of the same device, measured in the same
  run;
- with Swin-T in the run, each other backbone's forward+backward time over Swin-T's from
  ``--repeat`` interleaved pairs (a Swin-T call, then one of the backbone): median and range
  of the per-pair ratios.

``--compile`` times every backbone's forward at 512x512 in eager PyTorch, under ``torch.compile``
(inductor) and as an exported ONNX graph in onnxruntime (``--docs PAGE`` then rewrites the
``<!-- deploy-latency -->`` block of that page). ``--ops routing,neighborhood`` runs the op
cases of each registered op (``bench_cases`` in the tools module its declaration names,
``mmattn/analysis/ops/<name>.py`` for mmattn's own) instead (each op's first impl is mmattn's
fast path; the impls of one op and size are timed in rounds, one call each per round, and
reported as the median of their per-round ratios to it, their forward outputs checked against
it).

Outputs: a markdown table, a JSON file and (for backbones) a latency-vs-resolution PNG per
device in ``--out-dir``. ``--docs docs/benchmarks.md`` rewrites that page's generated block
(between ``<!-- benchmark-tables -->`` and ``<!-- /benchmark-tables -->``) from this run and
the ``--include`` JSONs; ``--docs-only`` does it from the JSONs alone, measuring nothing. Every
table has one caption line naming the machine, the date and mmattn version measured, and what its
ratio columns mean.

    python tools/analysis/benchmark.py --repeat 3
    python tools/analysis/benchmark.py --backbones NAT:tiny,Swin-T --resolutions 512x512
    python tools/analysis/benchmark.py --ops routing,neighborhood --quick --no-memory
    python tools/analysis/benchmark.py --plug --backbones R-50,Swin-T
    python tools/analysis/benchmark.py --compile --docs docs/benchmarks.md
    python tools/analysis/benchmark.py --docs-only --docs docs/benchmarks.md \
        --out-dir docs/benchmark --include docs/benchmark/*.json
    python tools/analysis/benchmark.py --device cuda
"""
import argparse
import json
import os
import os.path as osp
import platform
import re
import subprocess
import sys
import time

import numpy as np
import torch

import mmattn
from mmattn.analysis.flops import measure_backbone
from mmattn.analysis.models import build_backbone, default_backbones, plug_specs, short_name
from mmattn.ops import op_specs
from mmattn.ops.common import check_bench_case

DEFAULT_RESOLUTIONS = '224x224,512x512,800x1216'
PLUG_RESOLUTIONS = '512x512,800x1216'
WARM_RESOLUTION = (64, 64)  # warm-up input of the memory probe (>= 32, cheap)


def device_description(device: str = 'cpu') -> str:
    """The machine in words, for every table header: CPU model or GPU name, torch, threads."""
    if device.startswith('cuda'):
        return (f'GPU {torch.cuda.get_device_name(device)}, torch {torch.__version__}, '
                f'CUDA {torch.version.cuda}')
    cpu = platform.processor() or 'unknown CPU'
    if osp.exists('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    return (f'CPU {cpu} ({os.cpu_count()} logical CPUs visible), torch {torch.__version__}, '
            f'{torch.get_num_threads()} threads')


def git_commit() -> str:
    """Short hash of the checkout measured (with '+' when it has uncommitted changes)."""
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    try:
        head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=root, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               cwd=root, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return head + ('+' if dirty else '')


def parse_resolution(text: str) -> tuple:
    """'HxW' or 'S' -> (H, W)."""
    dims = tuple(int(x) for x in text.lower().split('x'))
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 32:
        raise ValueError(f'resolution {text!r} must be HxW (or S) with H, W >= 32')
    return dims


# ------------------------------------------------------------------------------------------
# Timing and memory
# ------------------------------------------------------------------------------------------
def synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)


def _seconds(fn, device: str) -> float:
    """Seconds of one call of ``fn`` (CUDA: events after a synchronize)."""
    if device.startswith('cuda'):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        synchronize(device)
        start.record()
        fn()
        end.record()
        synchronize(device)
        return start.elapsed_time(end) / 1e3
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _stats(values: list) -> dict:
    values = sorted(values)
    return dict(median=values[len(values) // 2], min=values[0], max=values[-1], n=len(values))


def time_fn(fn, device: str, warmup: int, repeat: int) -> dict:
    """Median, min and max seconds of ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    return _stats([_seconds(fn, device) for _ in range(repeat)])


def paired_ratio(fn, reference_fn, device: str, warmup: int, repeat: int) -> dict:
    """Median, min and max of ``repeat`` ratios (time of ``fn`` / time of ``reference_fn``),
    each from one call of ``reference_fn`` directly followed by one of ``fn``: on a shared
    machine whose speed drifts over minutes (this project's 2-core VM read NAT-T at 1.02x and
    1.48x of Swin-T in two runs that timed them separately), the two calls of a pair see the
    same machine, which separate measurements minutes apart do not."""
    for _ in range(warmup):
        reference_fn()
        fn()
    ratios = []
    for _ in range(repeat):
        base = _seconds(reference_fn, device)
        ratios.append(_seconds(fn, device) / base)
    return _stats(ratios)


def gemm_rate(device: str, repeat: int) -> float:
    """Measured fp32 GEMM rate (GFLOP/s) of ``device``: the roofline the models are held to,
    so the fastest of at least 10 calls (a median of 5 read 91 GFLOP/s on a CPU whose next run
    read 134, and models then showed more than 100% of it)."""
    n = 4096 if device.startswith('cuda') else 1024
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    stats = time_fn(lambda: torch.mm(a, b), device, warmup=2, repeat=max(repeat, 10))
    return 2 * n**3 / stats['min'] / 1e9


def _status_bytes(field: str) -> int:
    with open('/proc/self/status') as f:
        line = next(line for line in f if line.startswith(field + ':'))
    return int(line.split()[1]) * 1024


def rss_growth(fn) -> int:
    """Peak RSS growth (bytes) of one ``fn()`` in this process (Linux; meant for a fresh one)."""
    try:  # reset the high-water mark to the current RSS (Linux >= 4.0)
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass
    before = _status_bytes('VmRSS')
    fn()
    return max(0, _status_bytes('VmHWM') - before)


def cuda_growth(fn, device: str) -> int:
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def peak_in_fresh_process(probe_args: list, threads) -> int:
    """Run this script's ``--probe`` in a new Python process; its peak RSS growth in bytes."""
    cmd = [sys.executable, osp.abspath(__file__), '--probe', *probe_args]
    if threads:
        cmd += ['--threads', str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f'memory probe {probe_args} failed:\n{res.stderr[-2000:]}')
    return json.loads(res.stdout.strip().splitlines()[-1])['peak_bytes']


def _step(fn, inputs, train: bool):
    """Forward (no grad) or forward + backward of the sum of the outputs."""
    def run():
        if not train:
            with torch.no_grad():
                return fn(*inputs)
        for t in inputs:
            t.grad = None
        out = fn(*inputs)
        outs = out if isinstance(out, (tuple, list)) else (out, )
        sum(o.float().sum() for o in outs).backward()
        return out

    return run


# ------------------------------------------------------------------------------------------
# Backbones
# ------------------------------------------------------------------------------------------
def model_call(spec: str, resolution: tuple, device: str, train: bool):
    """(step, model): one forward or forward+backward of backbone ``spec`` at ``resolution``."""
    model = build_backbone(spec).to(device)
    model.train(train)
    x = torch.randn(1, getattr(model, 'in_channels', 3), *resolution, device=device)
    return _step(model, (x, ), train), model


def bench_backbone(spec, resolution, args, gemm_gflops, reference=None) -> dict:
    """Cost, latency and peak memory of one backbone at one input; with ``reference`` (the spec
    of :data:`REFERENCE_BACKBONE` in this run) also its forward+backward time over the
    reference's, from interleaved pairs (:func:`paired_ratio`)."""
    row = dict(backbone=short_name(spec), resolution='x'.join(map(str, resolution)))
    cost = measure_backbone(build_backbone(spec), *resolution)
    row.update(params=cost.params, macs=cost.macs)
    for train, key in ((False, 'fwd'), (True, 'fwd+bwd')):
        step, _ = model_call(spec, resolution, args.device, train)
        row[key] = time_fn(step, args.device, args.warmup, args.repeat)
        if train and reference and short_name(reference) != row['backbone']:
            ref_step, _ = model_call(reference, resolution, args.device, train)
            row['vs_reference'] = paired_ratio(step, ref_step, args.device, args.warmup,
                                               args.repeat)
            del ref_step
        if args.memory:
            row[f'mem {key}'] = (cuda_growth(step, args.device) if args.device.startswith('cuda')
                                 else peak_in_fresh_process(
                                     ['model', spec, row['resolution'], key], args.threads))
        del step
    row['gflops'] = 2 * cost.macs / row['fwd']['median'] / 1e9
    row['gemm_share'] = row['gflops'] / gemm_gflops
    return row


def probe_model(spec, resolution, mode) -> int:
    train = mode == 'fwd+bwd'
    warm, _ = model_call(spec, WARM_RESOLUTION, 'cpu', train)
    warm()
    step, _ = model_call(spec, parse_resolution(resolution), 'cpu', train)
    return rss_growth(step)


# ------------------------------------------------------------------------------------------
# Ops
# ------------------------------------------------------------------------------------------
def op_families() -> list:
    """The registered ops that declare benchmark cases: 'dual', 'group_mix', ..."""
    return [name for name, spec in op_specs().items() if spec.tools is not None]


def load_cases(family: str, device: str = 'cpu', quick: bool = False) -> list:
    """The registered op ``family``'s ``bench_cases(device, quick)``, each case checked.

    Raises:
        ValueError: an unknown family, naming the available ones, or a case missing a key.
    """
    families = op_families()
    if family not in families:
        raise ValueError(f'unknown --ops family {family!r}; choose from {families}')
    spec = op_specs()[family]
    cases = spec.bench_cases(device=device, quick=quick)
    for case in cases:
        check_bench_case(spec.tools, case)
    return cases


def find_case(family, op, impl, size, quick) -> dict:
    for case in load_cases(family, 'cpu', quick):
        if (case['op'], case['impl'], case['size']) == (op, impl, size):
            return case
    raise ValueError(f'no case {op!r} / {impl!r} / {size!r} in the {family!r} op cases')


def probe_op(family, op, impl, size, mode, quick) -> int:
    train = mode == 'fwd+bwd'
    # Warm-up on the tiny (quick) case of the same op and impl when there is one.
    warm = next((c for c in load_cases(family, 'cpu', quick=True) if c['impl'] == impl
                 and c['op'].split()[0] == op.split()[0]), None)
    if warm is not None:
        _step(*warm['build'](), train)()
    fn, inputs = find_case(family, op, impl, size, quick)['build']()
    return rss_growth(_step(fn, inputs, train))


def bench_ops(family, args) -> list:
    """Every case of ``family``, one (op, size) group at a time: the group's impls are timed in
    rounds (one call of each impl per round, after ``--warmup`` rounds), so that they share
    the machine's state of the same seconds, and each impl's ratio to the group's first impl
    (mmattn) is the median of its per-round ratios (``ratio``; their min and max in
    ``ratio_range``)."""
    groups = {}
    for case in load_cases(family, args.device, args.quick):
        groups.setdefault((case['op'], case['size']), []).append(case)
    rows = []
    for (op, size), cases in groups.items():
        built = [case['build']() for case in cases]
        group_rows, first_out = [], None
        for case, (fn, inputs) in zip(cases, built):
            row = dict(family=family, op=op, size=size, impl=case['impl'])
            out = _step(fn, inputs, False)()
            if first_out is None:
                first_out = out
            elif isinstance(out, (tuple, list)):  # a floor made of kernels: no single output
                row['max_abs_diff'] = None
            else:
                row['max_abs_diff'] = (out.float() - first_out.float()).abs().max().item()
            del out
            group_rows.append(row)
        for key, train in (('fwd', False), ('fwd+bwd', True)):
            timed = [(row, _step(fn, inputs, train)) for row, (fn, inputs) in
                     zip(group_rows, built) if not train or any(t.requires_grad for t in inputs)]
            for _ in range(args.warmup):
                for _, step in timed:
                    step()
            rounds = [[_seconds(step, args.device) for _, step in timed]
                      for _ in range(args.repeat)]
            for i, (row, step) in enumerate(timed):
                row[key] = _stats([times[i] for times in rounds])
                if timed[0][0] is group_rows[0]:
                    ratio = _stats([times[i] / times[0] for times in rounds])
                    row.setdefault('ratio', {})[key] = ratio['median']
                    row.setdefault('ratio_range', {})[key] = [ratio['min'], ratio['max']]
                if args.memory:
                    row[f'mem {key}'] = (
                        cuda_growth(step, args.device) if args.device.startswith('cuda') else
                        peak_in_fresh_process(['op', family, op, row['impl'], size, key,
                                               'quick' if args.quick else 'full'],
                                              args.threads))
            del timed
        for row in group_rows:
            print(f'[ops] {family} {op} {size} {row["impl"]}: ' + ', '.join(
                f'{k} {row[k]["median"] * 1e3:.1f} ms' for k in ('fwd', 'fwd+bwd') if k in row),
                file=sys.stderr, flush=True)
        rows += group_rows
        del built, first_out
    return rows


# ------------------------------------------------------------------------------------------
# Deploy: eager vs torch.compile vs onnxruntime
# ------------------------------------------------------------------------------------------
def bench_deploy(spec, resolution, args) -> dict:
    """Forward latency (eval, no grad) of one backbone in eager PyTorch, compiled by
    ``torch.compile`` (inductor, static shape) and exported to ONNX (fixed shape, opset 18) in
    onnxruntime with as many intra-op threads as torch uses; the first compiled call's time and
    each output's max relative difference to eager are kept."""
    from mmattn.deploy import (
        export_onnx,
        flatten_outputs,
        max_diffs,
        onnxruntime_session,
        run_onnxruntime,
    )
    row = dict(backbone=short_name(spec), resolution='x'.join(map(str, resolution)))
    torch.manual_seed(0)
    model = build_backbone(spec)
    model.eval()  # not chained: mmdet's SwinTransformer.train() returns None
    x = torch.randn(1, getattr(model, 'in_channels', 3), *resolution,
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = flatten_outputs(model(x))
        row['eager'] = time_fn(lambda: model(x), 'cpu', args.warmup, args.repeat)

        torch._dynamo.reset()
        compiled = torch.compile(model, backend='inductor', dynamic=False)
        start = time.perf_counter()
        outputs = flatten_outputs(compiled(x))
        row['compile_s'] = time.perf_counter() - start
        row['compiled'] = time_fn(lambda: compiled(x), 'cpu', args.warmup, args.repeat)
        row['compiled_rel_diff'] = max(max_diffs(r, o.numpy())[1]
                                       for r, o in zip(reference, outputs))
        compiled = None  # free the compiled graph before the export
        torch._dynamo.reset()

        path = osp.join(args.out_dir, f'{row["backbone"]}_{row["resolution"]}.onnx')
        start = time.perf_counter()
        export_onnx(model, x, path, dynamic=False)
        row['export_s'] = time.perf_counter() - start
    session = onnxruntime_session(path, threads=torch.get_num_threads())
    outputs = run_onnxruntime(session, x)
    row['onnxruntime'] = time_fn(lambda: run_onnxruntime(session, x), 'cpu', args.warmup,
                                 args.repeat)
    row['onnx_rel_diff'] = max(max_diffs(r, o)[1] for r, o in zip(reference, outputs))
    return row


def measure_each(tag, args, measure, summary) -> list:
    """``measure(spec, resolution)`` of every ``--backbones`` spec (default: every family's
    headline variant and the baselines) at every ``--resolutions``; a failure becomes a row
    with its error (one broken model must not end the run). Progress goes to stderr."""
    specs = args.backbones.split(',') if args.backbones else default_backbones()
    rows = []
    for spec in specs:
        for res in (parse_resolution(r) for r in args.resolutions.split(',')):
            try:
                row = measure(spec, res)
            except Exception as exc:  # noqa: BLE001 - one failure must not end the run
                row = dict(backbone=short_name(spec), resolution='x'.join(map(str, res)),
                           error=f'{type(exc).__name__}: {exc}'[:200])
            rows.append(row)
            print(f'[{tag}] {row["backbone"]} {row["resolution"]}: ' +
                  (row['error'] if 'error' in row else summary(row)), file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------
def _ms(stats) -> str:
    if not stats:
        return '-'
    spread = (stats['max'] - stats['min']) / 2 / stats['median'] * 100
    return f'{stats["median"] * 1e3:.1f} ±{spread:.0f}%'


def _mib(row, key) -> str:
    return f'{row[key] / 2**20:.0f}' if key in row else '-'


def _failed_row(row, columns=9) -> str:
    """A table row for a failed measurement: the error's first line, without terminal colours."""
    error = re.sub(r'\x1b\[[0-9;]*m', '', row['error']).strip().split('\n')[0]
    return f'| {row["backbone"]} | {row["resolution"]} | failed: {error} |' + ' |' * (columns - 3)


def _table(caption: str, columns: list, rows: list, cells) -> str:
    """A markdown table under ``caption``: ``cells(row)`` (a list of strings) for each row, the
    error's first line for a failed one."""
    lines = [caption, '', '| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    for r in rows:
        lines.append(_failed_row(r, len(columns)) if 'error' in r else
                     '| ' + ' | '.join(cells(r)) + ' |')
    return '\n'.join(lines) + '\n'


REFERENCE_BACKBONE = 'Swin-T'  # the training-time yardstick of the backbone table


def _train_gflops(r) -> str:
    """fwd+bwd GFLOP/s, counting the backward as twice the forward's MACs (the usual 3x), as a
    share of the GEMM rate of the row's own run."""
    rate = 2 * 3 * r['macs'] / r['fwd+bwd']['median'] / 1e9
    return f'{rate:.0f} ({100 * rate * r["gemm_share"] / r["gflops"]:.0f}%)'


def measured_on(run) -> str:
    """Where and when a run was measured: machine, date and mmattn version (the caption's
    start). The commit stays in the JSON, out of the pages."""
    version = run.get('mmattn_version')
    return (f'Measured on {run["device_description"]}, on {run.get("date", "an unrecorded date")}'
            + (f' with mmattn {version}' if version else ''))


def format_model_table(rows, run) -> str:
    gemm = run.get('gemm_text', f'{run["gemm_gflops"]:.0f} GFLOP/s')
    timing = run.get('timing_text', f'median of {run["repeat"]} after {run["warmup"]} warm-up')
    reference = {r['resolution']: r['fwd+bwd']['median'] for r in rows
                 if r['backbone'] == REFERENCE_BACKBONE and 'error' not in r}

    def vs_reference(r):
        if 'vs_reference' in r:
            pairs = r['vs_reference']
            return f'{pairs["median"]:.2f}x ({pairs["min"]:.2f}-{pairs["max"]:.2f})'
        base = reference.get(r['resolution'])
        return f'{r["fwd+bwd"]["median"] / base:.2f}x' if base else '-'

    return _table(
        f'{measured_on(run)}. Batch 1, float32; {timing} (± half the min..max spread); peak '
        f'MiB: {run["memory_method"]}; % of GEMM: of the fp32 GEMM rate measured in the run '
        f'({gemm}). fwd+bwd / {REFERENCE_BACKBONE}: time over {REFERENCE_BACKBONE}\'s at the '
        f'same input, median (min-max) of per-pair ratios, each pair a {REFERENCE_BACKBONE} '
        'call directly followed by one of the backbone; without a range, the quotient of the '
        'two medians.',
        ['backbone', 'input', 'params (M)', 'GMACs', 'fwd ms', 'fwd+bwd ms', 'peak MiB fwd',
         'peak MiB fwd+bwd', 'fwd GFLOP/s (% of GEMM)', 'fwd+bwd GFLOP/s (% of GEMM)',
         f'fwd+bwd / {REFERENCE_BACKBONE}'], rows,
        lambda r: [r['backbone'], r['resolution'], f'{r["params"] / 1e6:.1f}',
                   f'{r["macs"] / 1e9:.1f}', _ms(r['fwd']), _ms(r['fwd+bwd']),
                   _mib(r, 'mem fwd'), _mib(r, 'mem fwd+bwd'),
                   f'{r["gflops"]:.0f} ({100 * r["gemm_share"]:.0f}%)',
                   _train_gflops(r), vs_reference(r)])


def _abs_diff(r) -> str:
    if 'max_abs_diff' not in r:
        return '(reference)'
    return 'n/a' if r['max_abs_diff'] is None else f'{r["max_abs_diff"]:.1e}'


def _ratios(r) -> str:
    ratio = r.get('ratio', {})
    return ', '.join(f'{ratio[k]:.1f}x' for k in ('fwd', 'fwd+bwd') if k in ratio)


def format_ops_table(rows, run) -> str:
    return _table(
        f'{measured_on(run)}. float32; median of {run["repeat"]} after {run["warmup"]} '
        f'warm-up (± half the min..max spread); peak MiB: {run["memory_method"]}. time / '
        'mmattn: the median of per-round ratios to mmattn\'s time (each round calls every '
        'impl of the row\'s op and size once, in turn).',
        ['op', 'size', 'impl', 'fwd ms', 'fwd+bwd ms', 'peak MiB fwd', 'peak MiB fwd+bwd',
         'time / mmattn (fwd, fwd+bwd)', 'max abs diff vs mmattn'], rows,
        lambda r: [r['op'], r['size'], r['impl'], _ms(r.get('fwd')), _ms(r.get('fwd+bwd')),
                   _mib(r, 'mem fwd'), _mib(r, 'mem fwd+bwd'), _ratios(r),
                   _abs_diff(r)])


def format_deploy_table(rows, run) -> str:
    return _table(
        f'{measured_on(run)}. Batch 1, float32, eval forward; median of {run["repeat"]} '
        f'after {run["warmup"]} warm-up (± half the min..max spread). compiled: '
        '`torch.compile` (inductor, static shape; first call = compile time with the cache of '
        'this run). onnxruntime: CPUExecutionProvider of a fixed-shape '
        'export (opset 18), intra-op threads = torch threads. Ratios: time / eager time.',
        ['backbone', 'input', 'eager ms', 'compiled ms', 'compiled / eager',
         'first compiled call s', 'onnxruntime ms', 'onnxruntime / eager',
         'max rel diff vs eager (compiled, onnxruntime)'], rows,
        lambda r: [r['backbone'], r['resolution'], _ms(r['eager']), _ms(r['compiled']),
                   f'{r["compiled"]["median"] / r["eager"]["median"]:.2f}x',
                   f'{r["compile_s"]:.0f}', _ms(r['onnxruntime']),
                   f'{r["onnxruntime"]["median"] / r["eager"]["median"]:.2f}x',
                   f'{r["compiled_rel_diff"]:.1e}, {r["onnx_rel_diff"]:.1e}'])


def plot_latency(rows, run, path) -> str:
    """Forward and forward+backward latency vs megapixels, one line per backbone."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [r for r in rows if 'error' not in r]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=100)
    for ax, key in zip(axes, ('fwd', 'fwd+bwd')):
        for name in dict.fromkeys(r['backbone'] for r in rows):
            pts = sorted((parse_resolution(r['resolution'])[0] * parse_resolution(
                r['resolution'])[1] / 1e6, r[key]['median'] * 1e3)
                for r in rows if r['backbone'] == name)
            ax.plot(*zip(*pts), marker='o', label=name)
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('input megapixels (batch 1)')
        ax.set_ylabel(f'{key} latency (ms, median)')
        ax.set_title(key)
        ax.grid(alpha=0.3, which='both')
        ax.legend(fontsize=8)
    fig.suptitle(run['device_description'], fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def machine_of(run) -> str:
    """The machine a run was measured on and its threads: the description without torch."""
    return re.sub(r', torch [^,]*', '', run.get('device_description', 'unknown machine'))


def merge_backbone_runs(runs: list, plot_dir: str) -> list:
    """One run per device and machine from the backbone runs (e.g. one per resolution, so that
    the heavy lock is released in between): rows concatenated, model order kept, resolutions
    ascending, every run's GEMM rate listed, one latency plot each. Runs of one device on
    different machines stay apart (their times do not compare): each gets a ``title`` naming
    the machine, and the plots after the first one a file name of their own."""
    merged = {}
    for run in runs:
        if not run.get('models'):
            continue
        into = merged.setdefault((run['device'], machine_of(run)), dict(
            run, models=[], gemm_runs=[], timings={}, commits=[], dates=[], versions=[]))
        into['models'] += run['models']
        into['gemm_runs'].append(run['gemm_gflops'])
        into['commits'].append(run.get('commit', 'unknown'))
        into['dates'].append(run.get('date', 'an unrecorded date'))
        if run.get('mmattn_version'):
            into['versions'].append(run['mmattn_version'])
        into['timings'].setdefault((run['repeat'], run['warmup']), []).extend(
            r['resolution'] for r in run['models'])
    devices = [device for device, _ in merged]
    seen = set()
    for (device, machine), run in merged.items():
        run['gemm_text'] = ', '.join(f'{g:.0f}' for g in run['gemm_runs']) + ' GFLOP/s'
        run['timing_text'] = '; '.join(
            f'{", ".join(dict.fromkeys(res))}: median of {rep} after {warm} warm-up'
            for (rep, warm), res in run['timings'].items())
        run['commit'] = ', '.join(dict.fromkeys(run['commits']))
        run['date'] = ', '.join(dict.fromkeys(run['dates']))
        run['mmattn_version'] = ', '.join(dict.fromkeys(run['versions'])) or None
        # a (backbone, resolution) measured again (e.g. after a failure) keeps its last success
        rows = {}
        for r in run['models']:
            key = (r['backbone'], r['resolution'])
            if 'error' not in r or key not in rows:
                rows[key] = r
        order = list(dict.fromkeys(r['backbone'] for r in run['models']))
        run['models'] = list(rows.values())
        run['models'].sort(key=lambda r: (order.index(r['backbone']), np.prod(
            parse_resolution(r['resolution']))))
        short = re.sub(r'^(CPU|GPU) |\s*\([^()]*\)(?=,|$)|\((R|TM)\)', '', machine)
        run['title'] = device if devices.count(device) == 1 else f'{device}, {short}'
        stem = f'backbones_{device.split(":")[0]}'
        if device in seen:
            stem += '_' + re.sub(r'[^a-z0-9]+', '_', short.lower()).strip('_')
        seen.add(device)
        run['plot'] = plot_latency(run['models'], run, osp.join(plot_dir,
                                                                f'{stem}_latency.png'))
    return list(merged.values())


TABLES_BLOCK = 'benchmark-tables'  # the generated block of the --docs page
DEPLOY_BLOCK = 'deploy-latency'  # the block --compile --docs rewrites


def docs_section(runs: list, page_dir: str, plot_dir: str) -> str:
    """The generated block of the --docs page: one table per device and machine for the
    backbones (the runs merged, with their latency plot), one per op run."""
    parts = []
    for run in merge_backbone_runs(runs, plot_dir):
        plot = osp.relpath(run['plot'], page_dir)
        parts += [f'## Backbones ({run["title"]})', '', format_model_table(run['models'], run),
                  f'![latency vs resolution, {run["title"]}]({plot})', '']
    for run in runs:
        if run.get('ops'):
            families = ', '.join(run['families'])
            parts += [f'## Ops against their naive anchors: {families} ({run["device"]})', '',
                      format_ops_table(run['ops'], run)]
    return '\n'.join(parts)


def update_block(page: str, name: str, text: str) -> None:
    """Replace what lies between ``<!-- name -->`` and ``<!-- /name -->`` in ``page`` with
    ``text`` (a page that does not exist yet is created holding only the block)."""
    start, end = f'<!-- {name} -->', f'<!-- /{name} -->'
    note = ('<!-- generated by tools/analysis/benchmark.py --docs: edits between these markers '
            'are overwritten -->')
    block = f'{start}\n{note}\n\n{text.strip()}\n\n{end}'
    if not osp.exists(page):
        with open(page, 'w') as f:
            f.write(block + '\n')
        return
    with open(page) as f:
        content = f.read()
    if start not in content or end not in content:
        raise ValueError(f'{page} has no "{start}" ... "{end}" block to replace (add the two '
                         'markers where the generated tables belong)')
    head, rest = content.split(start, 1)
    with open(page, 'w') as f:
        f.write(head + block + rest.split(end, 1)[1])


# ------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backbones', default=None,
                        help='comma-separated TYPE[:ARCH] or baseline names; default: '
                        'every family\'s headline variant, Swin-T and PVTv2-B2')
    parser.add_argument('--resolutions', default=None,
                        help=f'comma-separated HxW (default {DEFAULT_RESOLUTIONS}; with --plug '
                        f'{PLUG_RESOLUTIONS})')
    parser.add_argument('--ops', default=None,
                        help='comma-separated op modules of mmattn.ops to benchmark instead of '
                        f'backbones, or "all": {op_families()}')
    parser.add_argument('--plug', action='store_true',
                        help='the plug-in blocks: every stock host (R-50, Swin-T, PVTv2-B2, '
                        'MiT-B0) without and with each op (HOST+OP specs), at 512x512 and '
                        '800x1216 unless --resolutions is given; --backbones narrows the hosts')
    parser.add_argument('--compile', action='store_true',
                        help='deployment latency instead: eager vs torch.compile (inductor) vs '
                        'onnxruntime of every backbone, forward at 512x512 unless --resolutions '
                        'is given (CPU only)')
    parser.add_argument('--quick', action='store_true', help='tiny op sizes (smoke test)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--no-memory', dest='memory', action='store_false',
                        help='skip the peak-memory measurements')
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--docs', metavar='PAGE', default=None,
                        help=f'rewrite the <!-- {TABLES_BLOCK} --> block of this Markdown page '
                        '(docs/benchmarks.md) with the tables of this run and of --include; '
                        f'with --compile the page\'s <!-- {DEPLOY_BLOCK} --> block instead')
    parser.add_argument('--include', nargs='*', default=[],
                        help='JSON files of earlier runs to put in the --docs page too')
    parser.add_argument('--docs-only', action='store_true',
                        help='measure nothing: write the --docs page from the --include JSONs')
    parser.add_argument('--readme', '--readme-only', dest='old_readme', nargs='?', const='',
                        help=argparse.SUPPRESS)
    parser.add_argument('--name', default=None,
                        help='output file stem in --out-dir. Default: backbones_<device>, '
                        'ops_<device>, plug_<device> or deploy_<device> by mode')
    parser.add_argument('--probe', nargs='+', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.old_readme is not None:
        parser.error('--readme and --readme-only are gone: the tables live in docs/benchmarks.md '
                     'now; use --docs docs/benchmarks.md (and --docs-only instead of '
                     '--readme-only)')
    if args.docs_only and not (args.docs and args.include):
        parser.error('--docs-only needs --docs PAGE and --include JSON...')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available to this torch')
    if args.repeat < 1 or args.warmup < 0:
        parser.error('--repeat must be >= 1 and --warmup >= 0')
    if args.compile and not args.device.startswith('cpu'):
        parser.error('--compile measures the CPU deployment paths (inductor C++, onnxruntime '
                     'CPU); drop --device')
    if args.resolutions is None:
        args.resolutions = ('512x512' if args.compile else
                            PLUG_RESOLUTIONS if args.plug else DEFAULT_RESOLUTIONS)
    if args.plug:
        hosts = args.backbones.split(',') if args.backbones else None
        args.backbones = ','.join(s for s in plug_specs()
                                  if hosts is None or s.partition('+')[0] in hosts)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:  # a fresh process measuring one call's peak RSS growth
        kind, *rest = args.probe
        peak = probe_model(*rest) if kind == 'model' else probe_op(*rest[:5], rest[5] == 'quick')
        print(json.dumps(dict(peak_bytes=peak)))
        return None
    if args.docs_only:
        write_docs(args, [])
        return None
    device_kind = args.device.split(':')[0]
    run = dict(commit=git_commit(), mmattn_version=mmattn.__version__,
               date=time.strftime('%Y-%m-%d'), device=args.device,
               device_description=device_description(args.device),
               repeat=args.repeat, warmup=args.warmup, threads=torch.get_num_threads(),
               memory_method=('max_memory_allocated growth of one call' if device_kind == 'cuda'
                              else 'RSS growth of one call in a fresh process'),
               gemm_gflops=gemm_rate(args.device, args.repeat))
    print(f'# {run["device_description"]}; fp32 GEMM {run["gemm_gflops"]:.0f} GFLOP/s',
          flush=True)
    os.makedirs(args.out_dir, exist_ok=True)
    kind = 'ops' if args.ops else 'plug' if args.plug else 'deploy' if args.compile else \
        'backbones'
    stem = osp.join(args.out_dir, args.name or f'{kind}_{device_kind}')
    if args.ops:
        run['families'] = op_families() if args.ops == 'all' else args.ops.split(',')
        run['ops'] = [row for fam in run['families'] for row in bench_ops(fam, args)]
        table = format_ops_table(run['ops'], run)
    elif args.compile:
        run['deploy'] = measure_each(
            'deploy', args, lambda spec, res: bench_deploy(spec, res, args),
            lambda row: f'eager {_ms(row["eager"])} ms, compiled {_ms(row["compiled"])} ms, '
            f'onnxruntime {_ms(row["onnxruntime"])} ms')
        table = format_deploy_table(run['deploy'], run)
    else:
        specs = args.backbones.split(',') if args.backbones else default_backbones()
        reference = next((s for s in specs if short_name(s) == REFERENCE_BACKBONE), None)
        run['models'] = measure_each(
            'backbones', args,
            lambda spec, res: bench_backbone(spec, res, args, run['gemm_gflops'], reference),
            lambda row: f'fwd {_ms(row["fwd"])} ms, fwd+bwd {_ms(row["fwd+bwd"])} ms')
        table = format_model_table(run['models'], run)
        run['plot'] = plot_latency(run['models'], run, f'{stem}_latency.png')
    print(table)
    with open(stem + '.md', 'w') as f:
        f.write(table)
    with open(stem + '.json', 'w') as f:
        json.dump(run, f, indent=1)
    if args.docs and args.compile:
        update_block(args.docs, DEPLOY_BLOCK, table)
    elif args.docs:
        write_docs(args, [run])
    return run


def write_docs(args, runs):
    """The --docs page's tables from ``runs`` and the --include JSONs."""
    for path in args.include:
        with open(path) as f:
            runs.append(json.load(f))
    page_dir = osp.dirname(osp.abspath(args.docs))
    update_block(args.docs, TABLES_BLOCK, docs_section(runs, page_dir, args.out_dir))


if __name__ == '__main__':
    main()
