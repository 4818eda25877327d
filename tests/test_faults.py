"""Faults: wrong or unsafe checkpoints are refused with one error (a killed run resuming
exactly: tests/test_resume.py)."""
import os
import os.path as osp
import pickle
import re
import subprocess
import sys

import pytest
import torch
from helpers import REPO_ROOT, load_tool

sys.path.insert(0, osp.join(REPO_ROOT, 'tests', 'models'))
from test_biformer import official_state_dict  # noqa: E402


@pytest.fixture(scope='module')
def seg_models():
    """The demo BiFormer UPerNet, plus the same with a wider backbone and with a NAT backbone."""
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import mmattn  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py'))
    base = MODELS.build(cfg.model)
    wider = cfg.model.copy()
    wider.backbone = dict(wider.backbone, arch=dict(wider.backbone.arch, head_dim=8,
                                                    embed_dims=[32, 64, 128, 512]))
    wider.decode_head = dict(wider.decode_head, in_channels=[32, 64, 128, 512])
    other = cfg.model.copy()
    other.backbone = dict(type='NAT', arch=dict(embed_dims=32, depths=[1, 1, 2, 1],
                                                num_heads=[2, 4, 8, 16], mlp_ratio=2))
    other.decode_head = dict(other.decode_head, in_channels=[32, 64, 128, 256])
    return base, MODELS.build(wider), MODELS.build(other)


def _save(state, path, key='state_dict'):
    torch.save({key: state, 'meta': {}}, path)
    return str(path)


def test_matching_checkpoint_passes(seg_models, tmp_path):
    from mmattn.converters.check import checkpoint_mismatch
    base = seg_models[0]
    assert checkpoint_mismatch(base, _save(base.state_dict(), tmp_path / 'ok.pth')) is None


def test_wrong_variant_names_shapes_and_cause(seg_models, tmp_path):
    from mmattn.converters.check import checkpoint_mismatch
    base, wider, _ = seg_models
    message = checkpoint_mismatch(base, _save(wider.state_dict(), tmp_path / 'wider.pth'))
    assert 'shape mismatch' in message and 'backbone.stages.3.' in message
    assert 'another variant' in message
    assert message.count('\n') < 10  # the first keys, not hundreds of lines


def test_wrong_family_names_keys_and_cause(seg_models, tmp_path):
    from mmattn.converters.check import checkpoint_mismatch
    base, _, nat = seg_models
    path = _save(nat.state_dict(), tmp_path / 'nat.pth')
    message = checkpoint_mismatch(base, path, purpose='load_from')
    assert re.search(r'missing \(\d+\): backbone\.', message)
    assert re.search(r'unexpected \(\d+\): backbone\.levels\.', message)
    assert 'another model family' in message
    # a fine-tuning load_from may differ in the heads only, never in the backbone
    heads_only = {k: v for k, v in base.state_dict().items()
                  if not k.startswith('decode_head.conv_seg')}
    assert checkpoint_mismatch(base, _save(heads_only, tmp_path / 'h.pth'), 'load_from') is None
    assert 'decode_head.conv_seg' in checkpoint_mismatch(base, str(tmp_path / 'h.pth'), 'test')


def test_official_backbone_checkpoint_says_convert(seg_models, tmp_path):
    from mmattn.converters.check import checkpoint_mismatch
    base = seg_models[0]
    official = official_state_dict([32, 64, 128, 256], [1, 1, 2, 1], classifier=True)
    path = _save({k: v.float() for k, v in official.items()}, tmp_path / 'official.pth', 'model')
    for purpose in ('test', 'load_from'):
        message = checkpoint_mismatch(base, path, purpose)
        assert 'official biformer backbone checkpoint' in message
        assert f'python tools/convert_ckpt.py biformer {path} OUT.pth' in message


@pytest.mark.slow
def test_test_tool_refuses_a_wrong_checkpoint(seg_models, synthetic_data, tmp_path):
    """tools/test.py exits with the message instead of evaluating a half-random model."""
    _, wider, _ = seg_models
    path = _save(wider.state_dict(), tmp_path / 'wider.pth')
    ade = osp.join(synthetic_data, 'ade20k')
    test = load_tool('test')
    with pytest.raises(SystemExit, match=r'(?s)tools/test.py: .*wider.pth does not match.*'
                       'likely cause'):
        test.main([osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py'), path,
                   '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                   f'test_dataloader.dataset.data_root={ade}'])


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.mark.slow
def test_pickle_carrying_code_is_refused_by_the_tools(tmp_path, seg_models):
    """A checkpoint whose pickle would run a command: refused by the checkpoint check of
    train/test, by convert_ckpt.py and by init_cfg=Pretrained; the command never runs."""
    from mmattn.converters import load_pretrained
    from mmattn.converters.check import check_checkpoint_or_exit

    marker = tmp_path / 'pwned'
    payload = _RunsCode()
    payload.marker = marker
    path = str(tmp_path / 'evil.pth')
    with open(path, 'wb') as f:
        pickle.dump({'state_dict': {'x': torch.zeros(1)}, 'meta': payload}, f)

    with pytest.raises(SystemExit, match='outside the weights-only allow-list'):
        check_checkpoint_or_exit(seg_models[0], path, 'test', 'test')
    with pytest.raises(RuntimeError, match='allow-list'):
        load_pretrained(seg_models[0].backbone, 'biformer', path)
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools/convert_ckpt.py'),
                           'biformer', path, str(tmp_path / 'out.pth')],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0 and 'allow-list' in proc.stderr
    assert not marker.exists()
