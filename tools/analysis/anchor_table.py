#!/usr/bin/env python
"""mmattn's fast path against one anchor of an op benchmark run, size by size, as a table.

Reads the JSON that ``tools/analysis/benchmark.py --ops FAMILY`` writes and prints, per size:
mmattn's forward and forward+backward time over the anchor's (with the range of the
per-round ratios where the run has them), both peak memories as
mmattn / anchor, and whether all four are within ``--target`` (time) and 1x (memory). With
``--floor IMPL`` (repeatable) also that impl's time over the anchor's: how far below the
anchor the floor's work alone already is (GroupMixFormer: its two projections; the
definition's kernels without any data movement).

    python tools/analysis/anchor_table.py docs/benchmark/ops_cpu_group_mix.json \\
        --anchor straightforward --floor 'projections only (floor)' \\
        --floor 'definition kernels (floor)' --target 0.75
"""
import argparse
import json
import sys

MIB = 2**20


def _over_anchor(row, anchor, mode, first=False):
    """(time of ``row`` / time of ``anchor``, (min, max) or None) in ``mode``; ``first``:
    ``row`` is the impl the run's ratios are taken to (mmattn).

    benchmark.py times an op's impls in rounds and keeps each impl's median per-round ratio to
    mmattn (``ratio``) with its min and max (``ratio_range``): mmattn / anchor is then the
    reciprocal of the anchor's median ratio, and its range the reciprocals of the anchor's max
    and min; another impl / anchor is the quotient of the two median ratios (no range). Runs
    without per-round ratios give the quotient of the two median times."""
    if mode in row.get('ratio', {}) and mode in anchor.get('ratio', {}):
        value = row['ratio'][mode] / anchor['ratio'][mode]
        spread = anchor.get('ratio_range', {}).get(mode)
        if first and spread:
            return value, (1 / spread[1], 1 / spread[0])
        return value, None
    return row[mode]['median'] / anchor[mode]['median'], None


def _floors(floor):
    return [] if floor is None else [floor] if isinstance(floor, str) else list(floor)


def anchor_rows(run, anchor, floor=None, target=0.75, fast='mmattn'):
    """One dict per size that has both ``fast`` and ``anchor`` rows, in the run's order;
    ``floor``: one impl name or several."""
    by_size = {}
    for row in run['ops']:
        by_size.setdefault(row['size'], {})[row['impl']] = row
    rows = []
    for size, impls in by_size.items():
        if fast not in impls or anchor not in impls:
            continue
        ours, theirs = impls[fast], impls[anchor]
        row = dict(size=size)
        for mode in ('fwd', 'fwd+bwd'):
            row[f'time {mode}'], row[f'range {mode}'] = _over_anchor(ours, theirs, mode, True)
            row[f'mem {mode}'] = (ours[f'mem {mode}'], theirs[f'mem {mode}'])
            for name in _floors(floor):
                if name in impls:
                    row[f'floor {name} {mode}'] = _over_anchor(impls[name], theirs, mode)[0]
        row['met'] = (all(row[f'time {m}'] <= target for m in ('fwd', 'fwd+bwd'))
                      and all(a <= b for a, b in (row['mem fwd'], row['mem fwd+bwd'])))
        rows.append(row)
    return rows


def format_table(rows, anchor, floor=None, target=0.75):
    def mem(pair):
        ours, theirs = pair
        ratio = f'{ours / theirs:.2f}x' if theirs else 'n/a'
        return f'{ours / MIB:.0f} / {theirs / MIB:.0f} = {ratio}'

    def _time(row, mode):
        spread = row.get(f'range {mode}')
        text = f"{row[f'time {mode}']:.2f}x"
        return text + (f' ({spread[0]:.2f}-{spread[1]:.2f})' if spread else '')

    head = ['size', f'fwd mmattn/{anchor}', f'fwd+bwd mmattn/{anchor}']
    for name in _floors(floor):
        head += [f'fwd {name}/{anchor}', f'fwd+bwd {name}/{anchor}']
    head += ['peak MiB fwd mmattn/anchor', 'peak MiB fwd+bwd mmattn/anchor',
             'all four within target']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in rows:
        cells = [row['size']] + [_time(row, m) for m in ('fwd', 'fwd+bwd')]
        for name in _floors(floor):
            cells += [f"{row[f'floor {name} {m}']:.2f}x" if f'floor {name} {m}' in row
                      else 'n/a' for m in ('fwd', 'fwd+bwd')]
        cells += [mem(row['mem fwd']), mem(row['mem fwd+bwd']), 'yes' if row['met'] else 'no']
        lines.append('| ' + ' | '.join(cells) + ' |')
    met = sum(row['met'] for row in rows)
    lines += ['', f'{met} of {len(rows)} sizes meet all four (time <= {target}x, memory <= 1x).']
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('run', help='JSON of a benchmark.py --ops run')
    parser.add_argument('--anchor', required=True, help='impl name of the anchor rows')
    parser.add_argument('--floor', action='append',
                        help='impl name of a floor row (optional, repeatable)')
    parser.add_argument('--target', type=float, default=0.75,
                        help='largest time ratio mmattn / anchor that counts as met')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with open(args.run) as f:
        run = json.load(f)
    rows = anchor_rows(run, args.anchor, args.floor, args.target)
    if not rows:
        impls = sorted({row['impl'] for row in run.get('ops', [])})
        print(f'error: no size of {args.run} has both mmattn and {args.anchor!r} rows; '
              f'impls in the run: {impls}', file=sys.stderr)
        return 2
    print(f"{args.run}: commit {run.get('commit')}, {run.get('device_description')}")
    print(format_table(rows, args.anchor, args.floor, args.target))
    return 0


if __name__ == '__main__':
    sys.exit(main())
