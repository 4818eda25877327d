"""benchmark.py: backbone and op benchmarks end to end on tiny sizes (no timing asserted)."""
import json
import os.path as osp
import re

import pytest
import torch
from helpers import load_tool
from PIL import Image

import mmattn
from mmattn.analysis.models import default_backbones, family_classes
from mmattn.ops import op_specs

bench = load_tool('analysis/benchmark')


def test_default_list_has_every_family_and_the_baselines():
    specs = default_backbones()
    assert {s.split(':')[0] for s in specs} == set(family_classes()) | {'Swin-T', 'PVTv2-B2'}


def test_backbones_table_json_plot_and_docs_page(tmp_path):
    page = tmp_path / 'benchmarks.md'
    page.write_text('# Benchmarks\n\nintro\n\n<!-- benchmark-tables -->\nold table\n'
                    '<!-- /benchmark-tables -->\n\nkeep\n')
    run = bench.main(['--backbones', 'BiFormer:tiny,NAT:mini', '--resolutions', '32x64,64',
                      '--warmup', '0', '--repeat', '1', '--no-memory', '--out-dir',
                      str(tmp_path), '--docs', str(page)])
    assert [(r['backbone'], r['resolution']) for r in run['models']] == [
        ('BiFormer-tiny', '32x64'), ('BiFormer-tiny', '64x64'), ('NAT-mini', '32x64'),
        ('NAT-mini', '64x64')]
    for row in run['models']:
        assert row['fwd']['min'] <= row['fwd']['median'] <= row['fwd']['max']
        assert row['macs'] > 0 and row['gflops'] == pytest.approx(
            2 * row['macs'] / row['fwd']['median'] / 1e9)
    saved = json.loads((tmp_path / 'backbones_cpu.json').read_text())
    assert saved['gemm_gflops'] > 0 and len(saved['models']) == 4
    assert re.fullmatch(r'\d{4}-\d{2}-\d{2}', saved['date']) and saved['commit']
    table = (tmp_path / 'backbones_cpu.md').read_text()
    assert 'threads' in table and table.count('| NAT-mini |') == 2
    png = Image.open(tmp_path / 'backbones_cpu_latency.png').convert('L')
    assert len(png.getcolors(maxcolors=2**16)) > 20  # lines, labels, legend: not a blank canvas
    text = page.read_text()
    assert text.startswith('# Benchmarks\n\nintro\n') and text.endswith('\n\nkeep\n')
    assert 'old table' not in text and '| BiFormer-tiny |' in text
    # one caption line: machine, date and version measured, what the ratio column means; the
    # commit is in the JSON only
    caption = next(line for line in text.splitlines() if line.startswith('Measured on'))
    assert 'threads' in caption
    assert f'on {saved["date"]} with mmattn {mmattn.__version__}' in caption
    assert saved['commit'] not in text
    assert 'fwd+bwd / Swin-T:' in caption

    # A second run (another resolution) merged with the first into one table and one plot
    bench.main(['--backbones', 'NAT:mini', '--resolutions', '32', '--warmup', '0', '--repeat',
                '1', '--no-memory', '--out-dir', str(tmp_path), '--name', 'second'])
    bench.main(['--docs-only', '--docs', str(page), '--out-dir', str(tmp_path),
                '--include', str(tmp_path / 'backbones_cpu.json'), str(tmp_path / 'second.json')])
    text = page.read_text()
    assert text.count('## Backbones') == 1 and text.count('| NAT-mini |') == 3
    assert text.index('| NAT-mini | 32x32 |') < text.index('| NAT-mini | 32x64 |')
    assert '(backbones_cpu_latency.png)' in text and text.endswith('\n\nkeep\n')


def test_docs_page_block_is_created_or_must_have_its_markers(tmp_path):
    page = tmp_path / 'new.md'
    bench.update_block(str(page), 'benchmark-tables', '## Tables')
    assert page.read_text().startswith('<!-- benchmark-tables -->\n')
    assert '## Tables' in page.read_text()
    bench.update_block(str(page), 'benchmark-tables', '## Other')
    assert page.read_text().count('<!-- benchmark-tables -->') == 1
    assert '## Other' in page.read_text() and '## Tables' not in page.read_text()
    unmarked = tmp_path / 'unmarked.md'
    unmarked.write_text('# Page\n')
    with pytest.raises(ValueError, match='no "<!-- benchmark-tables -->"'):
        bench.update_block(str(unmarked), 'benchmark-tables', 'x')


@pytest.mark.parametrize('argv', [['--readme', 'README.md'], ['--readme-only']])
def test_old_readme_options_say_what_replaced_them(argv, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert '--docs docs/benchmarks.md' in capsys.readouterr().err


def test_docs_only_needs_a_page_and_runs(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(['--docs-only', '--docs', 'page.md'])
    assert '--docs-only needs' in capsys.readouterr().err


def test_runs_of_one_device_on_two_machines_stay_apart(tmp_path):
    def run(machine, backbone):
        timing = dict(median=1.0, min=1.0, max=1.0)
        return dict(device='cpu', device_description=f'CPU {machine} (2 logical CPUs visible), '
                    'torch 2.13.0+cpu, 2 threads', repeat=1, warmup=0, gemm_gflops=100.,
                    memory_method='-', models=[dict(
                        backbone=backbone, resolution='64x64', params=1e6, macs=1e9, fwd=timing,
                        **{'fwd+bwd': timing}, gflops=2.0, gemm_share=0.02)])

    merged = bench.merge_backbone_runs([run('AMD EPYC', 'A'), run('Intel(R) Xeon(R) Processor',
                                                                  'A'), run('AMD EPYC', 'B')],
                                       str(tmp_path))
    assert [(r['title'], [m['backbone'] for m in r['models']]) for r in merged] == [
        ('cpu, AMD EPYC, 2 threads', ['A', 'B']), ('cpu, Intel Xeon Processor, 2 threads', ['A'])]
    assert [osp.basename(r['plot']) for r in merged] == [
        'backbones_cpu_latency.png',
        'backbones_cpu_intel_xeon_processor_2_threads_latency.png']
    assert [r['title'] for r in bench.merge_backbone_runs([run('AMD EPYC', 'A')],
                                                          str(tmp_path))] == ['cpu']


def test_backbone_table_training_rate_and_ratio_to_swin():
    """fwd+bwd GFLOP/s counts 3x the forward MACs; fwd+bwd / Swin-T divides by Swin-T's time
    at the same input of the same run ('-' where Swin-T was not measured)."""
    def row(name, res, macs, train_s):
        timing = dict(median=train_s, min=train_s, max=train_s)
        return dict(backbone=name, resolution=res, params=1e6, macs=macs, fwd=timing,
                    **{'fwd+bwd': timing}, gflops=1.0, gemm_share=0.01)  # GEMM 100
    rows = [row('A', '64x64', 1e9, 0.5), row('Swin-T', '64x64', 2e9, 0.25),
            row('A', '32x32', 1e9, 0.5)]
    table = bench.format_model_table(rows, dict(
        device_description='cpu', gemm_gflops=100., repeat=1, warmup=0, memory_method='-'))
    lines = {tuple(line.split(' | ')[:2]): line for line in table.splitlines()}
    assert lines[('| A', '64x64')].endswith('| 12 (12%) | 2.00x |')  # 6 GFLOP in 0.5 s
    assert lines[('| Swin-T', '64x64')].endswith('| 1.00x |')
    assert lines[('| A', '32x32')].endswith('| - |')


def test_ops_quick_every_family(tmp_path):
    run = bench.main(['--ops', 'all', '--quick', '--warmup', '0', '--repeat', '1',
                      '--no-memory', '--out-dir', str(tmp_path)])
    # every registered op declares its cases; the tool lists none itself
    assert run['families'] == list(op_specs())
    groups = {}
    for row in run['ops']:
        groups.setdefault((row['family'], row['op'], row['size']), []).append(row)
    for (family, _, _), rows in groups.items():
        assert rows[0]['ratio']['fwd'] == 1.0 and 'max_abs_diff' not in rows[0]
        if family in ('routing', 'neighborhood'):  # these anchors compute the same function
            # (a floor of kernels alone has no comparable output: None)
            assert all(other['max_abs_diff'] < 1e-4 for other in rows[1:]
                       if other['max_abs_diff'] is not None), rows
    assert osp.exists(tmp_path / 'ops_cpu.md') and osp.exists(tmp_path / 'ops_cpu.json')


def test_cpu_peak_memory_probe_runs_in_a_fresh_process():
    small = bench.peak_in_fresh_process(
        ['op', 'routing', 'BRA S=4 topk=3', 'mmattn', 'quick 1x16x24x32', 'fwd+bwd', 'quick'],
        threads=1)
    assert isinstance(small, int) and small >= 0


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message without a GPU')
def test_cuda_without_a_gpu_is_one_clear_error(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(['--device', 'cuda'])
    assert 'no CUDA device' in capsys.readouterr().err


def test_bad_arguments():
    with pytest.raises(ValueError, match='H, W >= 32'):
        bench.parse_resolution('16x64')
    with pytest.raises(ValueError, match='routing'):
        bench.load_cases('no_such_family')


def test_ratio_to_swin_comes_from_interleaved_pairs(monkeypatch):
    """Each pair is one reference call directly followed by one backbone call (after the
    warm-up pairs); the ratios are per pair, and the table prints their median and range."""
    calls, durations = [], iter([2., 3., 1., 2., 4., 4.])  # (reference, backbone) x 3

    def seconds(fn, device):
        fn()
        return next(durations)

    monkeypatch.setattr(bench, '_seconds', seconds)
    stats = bench.paired_ratio(lambda: calls.append('x'), lambda: calls.append('ref'), 'cpu',
                               warmup=1, repeat=3)
    assert calls == ['ref', 'x'] * 4  # warm-up pair, then three timed pairs
    assert stats == dict(median=1.5, min=1.0, max=2.0, n=3)
    timing = dict(median=0.5, min=0.5, max=0.5)
    row = dict(backbone='A', resolution='64x64', params=1e6, macs=1e9, fwd=timing,
               gflops=1.0, gemm_share=0.01, vs_reference=stats, **{'fwd+bwd': timing})
    table = bench.format_model_table([row], dict(
        device_description='cpu', gemm_gflops=100., repeat=3, warmup=1, memory_method='-'))
    assert table.splitlines()[-1].endswith('| 1.50x (1.00-2.00) |')


@pytest.mark.slow
def test_run_with_swin_pairs_every_other_backbone(tmp_path):
    run = bench.main(['--backbones', 'NAT:mini,Swin-T', '--resolutions', '32', '--warmup', '0',
                      '--repeat', '2', '--no-memory', '--out-dir', str(tmp_path)])
    nat, swin = run['models']
    assert nat['vs_reference']['n'] == 2 and 'vs_reference' not in swin
    assert nat['vs_reference']['min'] <= nat['vs_reference']['median'] <= \
        nat['vs_reference']['max']


def test_op_impls_are_timed_in_rounds(monkeypatch):
    """The impls of one op and size take turns (one call each per round), and each ratio is
    the median of the per-round ratios to mmattn's call of the same round."""
    def case(impl, scale):
        def build():
            x = torch.ones(3, requires_grad=True)
            return (lambda t: (t * scale).sum()), [x]
        return dict(op='op', impl=impl, size='s', build=build)

    monkeypatch.setattr(bench, 'load_cases', lambda *a: [case('mmattn', 1.), case('other', 2.)])
    order, durations = [], iter([1., 3., 2., 2., 1., 5.,  # fwd: (mmattn, other) x 3
                                 1., 1., 1., 1., 1., 1.])  # fwd+bwd

    def seconds(step, device):
        order.append(step)
        return next(durations)

    monkeypatch.setattr(bench, '_seconds', seconds)
    args = bench.parse_args(['--ops', 'x', '--warmup', '0', '--repeat', '3', '--no-memory'])
    mine, other = bench.bench_ops('fam', args)
    assert order[0] is not order[1] and order[0] is order[2]  # alternating, both modes
    assert other['ratio'] == {'fwd': 3.0, 'fwd+bwd': 1.0}  # per round 3, 1, 5 -> median 3
    assert other['ratio_range'] == {'fwd': [1.0, 5.0], 'fwd+bwd': [1.0, 1.0]}
    assert other['fwd']['median'] == 3.0 and mine['fwd']['median'] == 1.0
    assert mine['ratio'] == {'fwd': 1.0, 'fwd+bwd': 1.0} and 'max_abs_diff' in other
