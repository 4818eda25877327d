"""``out_norms=False``: every backbone returns its raw stage maps and builds no output norm.

The output norms are the norms that only normalise a returned map (nothing later in the
backbone reads their output): ``norm0..3`` of BiFormer, NAT/DiNAT and Slide-Swin, ``norm4`` of
Dual-ViT (its ``norm1..3`` feed the next stage and stay). GroupMixFormer's and Slide-PVT's
``norm{i}`` are parameter-free identities (PVT v1 has no output norm), so for those two the flag
changes nothing. The tests take each class's output norms from the class itself: the modules
that ``out_norms=True`` builds and ``out_norms=False`` does not.
"""
import re

import pytest
import torch
from torch import nn

from mmattn.deploy.tiny import TINY_BACKBONES
from mmattn.models import NAT
from mmattn.registry import MODELS



def _build(name, **kwargs):
    return MODELS.build(dict(type=name, **TINY_BACKBONES[name], **kwargs)).eval()


def _output_norms(name):
    """The submodules ``out_norms=True`` builds and ``out_norms=False`` leaves out."""
    with_norms = dict(_build(name).named_children())
    without = dict(_build(name, out_norms=False).named_children())
    assert set(without) <= set(with_norms)
    return sorted(set(with_norms) - set(without))


def _randomise_norms(model, names):
    """Output norms that are not the identity, so that removing them shows."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in names:
            for param in getattr(model, name).parameters():
                param.add_(torch.randn(param.shape, generator=gen))


@pytest.mark.parametrize('name', sorted(TINY_BACKBONES))
def test_output_norms_normalise_one_returned_map_only(name):
    """What ``out_norms=False`` leaves out is ``norm{i}`` norms (or identities) that nothing
    later reads: without one of them, one returned map at most changes."""
    norms = _output_norms(name)
    torch.manual_seed(0)
    model = _build(name)
    _randomise_norms(model, norms)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        reference = model(x)
    for norm in norms:
        assert re.fullmatch(r'norm\d', norm), norm
        module = getattr(model, norm)
        assert isinstance(module, nn.Identity) or 'Norm' in type(module).__name__, module
        setattr(model, norm, nn.Identity())
        with torch.no_grad():
            changed = [not torch.equal(a, b) for a, b in zip(model(x), reference)]
        setattr(model, norm, module)
        assert sum(changed) <= 1, f'{name}.{norm} feeds {sum(changed)} returned maps'


@pytest.mark.parametrize('name', sorted(TINY_BACKBONES))
def test_out_norms_false_equals_norms_replaced_by_identity(name):
    norms = _output_norms(name)
    torch.manual_seed(0)
    with_norms = _build(name)
    _randomise_norms(with_norms, norms)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        normed = with_norms(x)
    for norm in norms:
        setattr(with_norms, norm, nn.Identity())
    raw = _build(name, out_norms=False)
    raw.load_state_dict(with_norms.state_dict(), strict=True)  # same tensors, none left over
    with torch.no_grad():
        expected, outs = with_norms(x), raw(x)
    assert len(outs) == len(expected) == 4
    for out, ref in zip(outs, expected):
        assert torch.equal(out, ref)
    for norm in norms:
        assert not hasattr(raw, norm)
        assert not any(k.startswith(f'{norm}.') for k in raw.state_dict())
    if any(True for norm in norms for _ in getattr(with_norms, norm).parameters()):
        # real output norms (not parameter-free identities): the outputs differ
        assert not all(torch.equal(a, b) for a, b in zip(normed, outs))


@pytest.mark.parametrize('name', sorted(TINY_BACKBONES))
def test_out_norms_false_freezes_and_trains(name):
    model = _build(name, out_norms=False, frozen_stages=2).train()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize('value', [None, 0, 'False'])
def test_out_norms_must_be_a_bool(value):
    with pytest.raises(TypeError, match='out_norms'):
        _build('NAT', out_norms=value)


def test_checkpoint_norms_are_skipped_and_reported(tmp_path, monkeypatch):
    """A converted checkpoint's norm{i} go unused without output norms: the loader drops those
    keys only (every other key stays strict) and says how many it dropped."""
    from mmattn.converters import load as loader
    messages = []
    monkeypatch.setattr(loader, 'print_log', lambda msg, **kw: messages.append(msg))
    torch.manual_seed(0)
    source = _build('NAT')
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    path = str(tmp_path / 'det.pth')
    torch.save({'state_dict': state}, path)
    model = _build('NAT', out_norms=False, init_cfg=dict(type='Pretrained', checkpoint=path,
                                                         prefix='backbone.'))
    model.init_weights()
    for key, value in model.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
    assert any('unused output norms: 8 tensors' in m and 'out_norms=False' in m
               for m in messages), messages


def test_surplus_keys_other_than_norms_still_fail(tmp_path):
    torch.manual_seed(0)
    state = {f'backbone.{k}': v for k, v in _build('NAT').state_dict().items()}
    state['backbone.extra.weight'] = torch.zeros(3)
    path = str(tmp_path / 'det.pth')
    torch.save({'state_dict': state}, path)
    model = NAT(**TINY_BACKBONES['NAT'], out_norms=False,
                init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    with pytest.raises(KeyError, match='extra'):
        model.init_weights()
