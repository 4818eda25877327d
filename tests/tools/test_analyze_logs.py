"""analyze_logs.py: curves of several runs from mmengine scalars.json files, with legends."""
import json

import pytest
from helpers import load_tool
from PIL import Image

analyze = load_tool('analysis/analyze_logs')


def write_run(root, name, scale, timestamps=('20260101_000000', )):
    """A work_dir with mmengine's layout: train records every 10 iters, val once per epoch."""
    for stamp in timestamps:
        folder = root / name / stamp / 'vis_data'
        folder.mkdir(parents=True)
        lines = [dict(lr=1e-3, loss=scale * 3 / i, loss_cls=scale * 2 / i, loss_bbox=scale / i,
                      time=0.3, iter=10 * i, step=10 * i) for i in range(1, 9)]
        lines += [{'coco/bbox_mAP': 0.1 * e / scale, 'coco/bbox_mAP_50': 0.2, 'data_time': 0.01,
                   'time': 0.05, 'step': e} for e in (1, 2)]
        (folder / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in lines) + '\n')
    return str(root / name)


def test_two_runs_losses_and_metrics(tmp_path):
    runs = [write_run(tmp_path, 'nat', 1.0, ('20260101_000000', '20260102_000000')),
            write_run(tmp_path, 'biformer', 2.0)]
    assert analyze.find_scalars(runs[0]).endswith('20260102_000000/vis_data/scalars.json')
    train, val = analyze.load_scalars(runs[1])
    assert len(train) == 8 and len(val) == 2
    assert analyze.default_metrics(val) == ['coco/bbox_mAP']  # the headline, not every AP
    out = analyze.main([*runs, '--out', str(tmp_path / 'curves.png'), '--title', 'demo'])
    img = Image.open(out).convert('RGB')
    assert img.size == (1300, 500) and len(img.getcolors(maxcolors=2**18)) > 200


def test_legend_count_and_missing_logs(tmp_path):
    run = write_run(tmp_path, 'a', 1.0)
    with pytest.raises(ValueError, match='one name per run'):
        analyze.plot_curves([run], str(tmp_path / 'x.png'), legend=['a', 'b'])
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        analyze.load_scalars(str(tmp_path / 'nothing'))
