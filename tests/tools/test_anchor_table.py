"""tools/analysis/anchor_table.py: ratios and the target check, from a benchmark JSON."""
import json

from helpers import load_tool

tool = load_tool('analysis/anchor_table')
MIB = 2**20


def _row(size, impl, fwd, both, mem_fwd, mem_both):
    return {'size': size, 'impl': impl, 'fwd': {'median': fwd}, 'fwd+bwd': {'median': both},
            'mem fwd': mem_fwd * MIB, 'mem fwd+bwd': mem_both * MIB}


RUN = {'commit': 'abc', 'device_description': 'CPU', 'ops': [
    _row('big', 'mmattn', 3.0, 6.0, 10, 20), _row('big', 'anchor', 6.0, 10.0, 12, 20),
    _row('big', 'floor', 1.5, 2.5, 1, 1),
    _row('small', 'mmattn', 1.0, 3.0, 5, 5), _row('small', 'anchor', 1.0, 6.0, 4, 9),
    _row('alone', 'mmattn', 1.0, 1.0, 1, 1)]}


def test_ratios_and_target():
    rows = tool.anchor_rows(RUN, 'anchor', 'floor', 0.75)
    assert [r['size'] for r in rows] == ['big', 'small']  # 'alone' has no anchor row
    big, small = rows
    assert (big['time fwd'], big['time fwd+bwd']) == (0.5, 0.6)
    assert (big['floor floor fwd'], big['floor floor fwd+bwd']) == (0.25, 0.25)
    assert big['met'] and not small['met']  # small: forward 1.0x and more forward memory
    text = tool.format_table(rows, 'anchor', 'floor', 0.75)
    assert '| big | 0.50x | 0.60x | 0.25x | 0.25x | 10 / 12 = 0.83x | 20 / 20 = 1.00x | yes |' \
        in text
    assert '| small | 1.00x | 0.50x | n/a | n/a | 5 / 4 = 1.25x | 5 / 9 = 0.56x | no |' in text
    assert text.endswith('1 of 2 sizes meet all four (time <= 0.75x, memory <= 1x).')


def test_per_round_ratios_and_their_range():
    """With benchmark.py's per-round ratios to mmattn, mmattn / anchor is the reciprocal of the
    anchor's median ratio and its range the reciprocals of the anchor's max and min."""
    run = json.loads(json.dumps(RUN))
    big = {row['impl']: row for row in run['ops'] if row['size'] == 'big'}
    big['mmattn'].update(ratio={'fwd': 1.0, 'fwd+bwd': 1.0},
                         ratio_range={'fwd': [1.0, 1.0], 'fwd+bwd': [1.0, 1.0]})
    big['anchor'].update(ratio={'fwd': 2.5, 'fwd+bwd': 1.25},
                         ratio_range={'fwd': [2.0, 4.0], 'fwd+bwd': [1.0, 2.0]})
    big['floor'].update(ratio={'fwd': 0.5, 'fwd+bwd': 0.5},
                        ratio_range={'fwd': [0.25, 1.0], 'fwd+bwd': [0.5, 0.5]})
    row = tool.anchor_rows(run, 'anchor', 'floor', 0.75)[0]
    assert (row['time fwd'], row['time fwd+bwd']) == (0.4, 0.8)  # not the medians' 0.5, 0.6
    assert (row['range fwd'], row['range fwd+bwd']) == ((0.25, 0.5), (0.5, 1.0))
    assert (row['floor floor fwd'], row['floor floor fwd+bwd']) == (0.2, 0.4)
    assert not row['met']  # forward+backward 0.8x
    assert '| big | 0.40x (0.25-0.50) | 0.80x (0.50-1.00) | 0.20x | 0.40x |' in \
        tool.format_table([row], 'anchor', 'floor', 0.75)


def test_several_floors():
    run = json.loads(json.dumps(RUN))
    run['ops'].append(_row('big', 'kernels', 4.5, 8.0, 1, 1))
    rows = tool.anchor_rows(run, 'anchor', ['floor', 'kernels'], 0.75)
    assert (rows[0]['floor kernels fwd'], rows[0]['floor kernels fwd+bwd']) == (0.75, 0.8)
    text = tool.format_table(rows, 'anchor', ['floor', 'kernels'], 0.75)
    assert '| fwd floor/anchor | fwd+bwd floor/anchor | fwd kernels/anchor | ' in text
    assert '| big | 0.50x | 0.60x | 0.25x | 0.25x | 0.75x | 0.80x |' in text
    assert '| small | 1.00x | 0.50x | n/a | n/a | n/a | n/a |' in text


def test_cli_names_the_missing_anchor(tmp_path, capsys):
    path = tmp_path / 'run.json'
    path.write_text(json.dumps(RUN))
    assert tool.main([str(path), '--anchor', 'anchor']) == 0
    assert 'commit abc' in capsys.readouterr().out
    assert tool.main([str(path), '--anchor', 'anchor', '--floor', 'floor', '--floor', 'x']) == 0
    assert '| fwd floor/anchor | fwd+bwd floor/anchor | fwd x/anchor |' in capsys.readouterr().out
    assert tool.main([str(path), '--anchor', 'official']) == 2
    err = capsys.readouterr().err
    assert "'official'" in err and "['anchor', 'floor', 'mmattn']" in err
