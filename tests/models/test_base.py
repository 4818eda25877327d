"""DenseBackbone (mmattn/models/backbones/base.py): arch parsing and the init_cfg forms.

mmengine allows ``init_cfg`` to be a list of initialiser dicts; a ``Pretrained`` entry in it is
read through mmattn's loader (key conversion, strict matching) after the other initialisers.
"""
import pytest
import torch
from torch import nn

from mmattn.models import NAT

TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], mlp_ratio=2.)


@pytest.fixture
def checkpoint(tmp_path):
    """A detector-style checkpoint of a randomly initialised tiny NAT: (path, its state dict)."""
    torch.manual_seed(0)
    reference = NAT(arch=TINY)
    reference.init_weights()
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    path = tmp_path / 'det.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in state.items()}, 'meta': {}}, path)
    return str(path), state


def _pretrained(path):
    return dict(type='Pretrained', checkpoint=path, prefix='backbone.')


def _assert_loaded(model, state):
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_list_init_cfg_with_only_pretrained_loads_it(checkpoint):
    path, state = checkpoint
    model = NAT(arch=TINY, init_cfg=[_pretrained(path)])
    model.init_weights()
    _assert_loaded(model, state)


def test_list_init_cfg_runs_other_initialisers_before_the_checkpoint(checkpoint):
    path, state = checkpoint
    init_cfg = [dict(type='Constant', layer='Linear', val=0.5, bias=0.), _pretrained(path)]
    model = NAT(arch=TINY, init_cfg=init_cfg)
    model.init_weights()
    _assert_loaded(model, state)  # the checkpoint comes last and wins
    assert model.init_cfg == init_cfg  # restored after the other initialisers ran


def test_list_init_cfg_without_pretrained_goes_to_mmengine():
    torch.manual_seed(0)
    model = NAT(arch=TINY, init_cfg=[dict(type='Constant', layer='Linear', val=0.5, bias=0.)])
    model.init_weights()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(torch.all(m.weight == 0.5) and torch.all(m.bias == 0)
                           for m in linears)


def test_list_init_cfg_with_two_checkpoints_is_refused(checkpoint):
    path, _ = checkpoint
    model = NAT(arch=TINY, init_cfg=[_pretrained(path), _pretrained(path)])
    with pytest.raises(ValueError, match='2 Pretrained checkpoints'):
        model.init_weights()


def test_dict_init_cfg_pretrained_still_loads(checkpoint):
    path, state = checkpoint
    model = NAT(arch=TINY, init_cfg=_pretrained(path))
    model.init_weights()
    _assert_loaded(model, state)


def test_parse_arch_names_zoo_and_checks_custom_keys():
    model = NAT(arch=TINY)
    with pytest.raises(ValueError, match=r"Unknown NAT arch 'huge'; choose one of .* or pass a"):
        model.parse_arch('huge', ('embed_dims', ))
    zoo = model.parse_arch('TINY', ('embed_dims', ))
    assert zoo == NAT.arch_zoo['tiny'] and zoo is not NAT.arch_zoo['tiny']
    with pytest.raises(ValueError, match=r"exactly the keys \['a', 'b'\]"):
        model.parse_arch(dict(a=1), ('a', 'b'))
    with pytest.raises(ValueError, match=r"keys \['a'\] and optionally \['b'\]"):
        model.parse_arch(dict(a=1, c=2), ('a', ), optional_keys=('b', ))
    assert model.parse_arch(dict(a=1, c=2), ('a', ), allow_extra_keys=True) == dict(a=1, c=2)
    with pytest.raises(ValueError, match=r"arch\['depths'\] needs 4 values"):
        model.parse_arch(dict(TINY, depths=[1, 2]))
    custom = dict(embed_dims=[8, 16, 32, 64], depths=[1] * 4, num_heads=[1] * 4,
                  mlp_ratios=[2.] * 4)
    parsed = model.parse_arch(custom)
    assert parsed == custom and parsed['depths'] is not custom['depths']  # a copy


def test_arch_schema_in_every_zoo_and_older_spellings_normalised():
    from mmattn.models import backbones
    from mmattn.models.backbones.base import ARCH_KEYS
    for name in backbones.__all__:
        cls = getattr(backbones, name)
        for key, arch in cls.arch_zoo.items():
            assert all(len(arch[k]) == 4 for k in ARCH_KEYS), (name, key)
    model = NAT(arch=TINY)
    # an int width doubles per stage, a scalar mlp_ratio applies to every stage
    assert model.parse_arch(TINY) == dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                                          num_heads=[1, 2, 4, 8], mlp_ratios=[2.] * 4)
    assert model.embed_dims == [16, 32, 64, 128]


def test_drop_path_rates_linear_over_all_blocks_split_per_stage():
    rates = NAT(arch=TINY).drop_path_rates(0.3, [1, 2, 0, 1])
    assert [len(r) for r in rates] == [1, 2, 0, 1]
    torch.testing.assert_close(torch.tensor(sum(rates, [])), torch.linspace(0, 0.3, 4))
