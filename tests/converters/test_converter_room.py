"""The converter room: a family declares a renaming table and its backbone's class name; reading,
unwrapping, dropping, output norms, the meta-model check and loading are shared."""
import sys

import pytest
import torch
from helpers import load_tool

from mmattn.converters import (CONVERTERS, CheckpointKeyError, convert_checkpoint, convert,
                               load_pretrained, register_converter)
from mmattn.models import NAT
from mmattn.registry import MODELS


def _tiny_nat(**kwargs):
    torch.manual_seed(0)
    return NAT(**NAT.test_arch, **kwargs)


def test_every_converter_builds_its_backbone_through_the_registry():
    backbones = {cls for cls in MODELS.module_dict.values()
                 if getattr(cls, 'family', None) is not None}
    assert {cls.family for cls in backbones} <= set(CONVERTERS)
    for cls in backbones:  # DiNAT converts through NAT: dilations change no parameter
        assert issubclass(cls, MODELS.get(CONVERTERS[cls.family].model)), cls
    assert all(MODELS.get(c.model) is not None for c in CONVERTERS.values())


def test_a_family_is_its_renaming_table(monkeypatch):
    """A converter that only renames ('toy.' prefix, 'fc' classifier) gets the shared steps:
    dropped tensors and output norms logged, output norms added, every key checked."""
    messages = []
    monkeypatch.setattr(convert, 'print_log', lambda msg, **kw: messages.append(msg))
    monkeypatch.setattr(convert, 'CONVERTERS', dict(CONVERTERS))
    arch = dict(NAT.test_arch)

    @register_converter('toy', model='NAT', out_norms=True, drops='the classifier: fc.*')
    def convert_toy(state_dict):
        return {k[len('toy.'):]: v for k, v in state_dict.items() if k.startswith('toy.')}, arch

    model = _tiny_nat()
    own = model.state_dict()
    official = {f'toy.{k}': v for k, v in own.items() if not k.startswith('norm')}
    official.update({'fc.weight': torch.zeros(5, 3), 'fc.bias': torch.zeros(5)})
    converted = convert_checkpoint('toy', {'model': official})

    assert set(converted) == set(own)
    assert all(torch.equal(converted[k], own[k]) for k in own if not k.startswith('norm'))
    assert all(torch.equal(converted[f'norm{i}.weight'], torch.ones_like(own[f'norm{i}.weight']))
               for i in range(4))
    assert messages[0] == 'toy converter: dropped 2 tensors (the classifier: fc.*)'
    assert 'output norms norm0, norm1, norm2, norm3 initialised to weight 1' in messages[1]
    del official['toy.levels.0.blocks.0.mlp.fc1.weight']
    with pytest.raises(CheckpointKeyError, match=r'missing \(1\): levels\.0\.blocks\.0\.mlp'):
        convert_checkpoint('toy', official)
    with pytest.raises(ValueError, match="no converter for 'swin'"):
        convert_checkpoint('swin', official)
    assert 'toy' not in CONVERTERS  # the registry of the test only


@pytest.mark.parametrize('prefix', [None, 'backbone.', 'backbone'])
def test_a_ddp_detector_checkpoint_is_unwrapped_once(tmp_path, prefix):
    source = _tiny_nat()
    state = {f'module.backbone.{k}': v for k, v in source.state_dict().items()}
    state['module.neck.conv.weight'] = torch.zeros(1)
    path = str(tmp_path / 'det.pth')
    torch.save({'state_dict': state, 'meta': dict(epoch=1)}, path)
    model = NAT(**NAT.test_arch)
    load_pretrained(model, 'nat', path, prefix=prefix)
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())


def test_errors_name_the_file(tmp_path):
    path = str(tmp_path / 'det.pth')
    torch.save({'state_dict': {'backbone.x': torch.zeros(1)}}, path)
    with pytest.raises(KeyError, match=f"no key of {path} starts with prefix 'neck.'"):
        load_pretrained(_tiny_nat(), 'nat', path, prefix='neck')
    torch.save({'model': {'x': torch.zeros(1), 'epoch': 3}}, path)
    with pytest.raises(CheckpointKeyError, match=f"no weights found in {path}.*'epoch'"):
        convert_checkpoint('nat', path)


def test_convert_and_ignore_keep_the_named_weights_initialised(tmp_path):
    """``convert=`` replaces the family's converter; ``ignore`` keys keep their init (the
    official PVT v1 loading of SlidePVT uses both)."""
    source, model = _tiny_nat(), NAT(**NAT.test_arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = str(tmp_path / 'cls.pth')
    torch.save({'model': {f'old.{k}': v for k, v in source.state_dict().items()}}, path)
    ignore = r'^levels\.0\.blocks\.0\.attn\.'
    load_pretrained(model, None, path, ignore=ignore,
                    convert=lambda sd: {k[len('old.'):]: v for k, v in sd.items()
                                        if 'levels.0.blocks.0.attn.' not in k})
    for key, value in model.state_dict().items():
        expected = before[key] if key.startswith('levels.0.blocks.0.attn.') else \
            source.state_dict()[key]
        assert torch.equal(value, expected), key


def test_convert_ckpt_help_lists_every_family(monkeypatch, capsys):
    tool = load_tool('convert_ckpt')
    monkeypatch.setattr(sys, 'argv', ['convert_ckpt.py', '--help'])
    with pytest.raises(SystemExit) as info:
        tool.main()
    out = capsys.readouterr().out
    assert info.value.code == 0 and '--trusted' in out
    assert all(family in out for family in CONVERTERS)
