import pytest
from mmengine.registry import init_default_scope

import mmattn  # noqa: F401
from mmattn.models import BiFormer
from mmattn.ops import BiLevelRoutingAttention

TINY = dict(embed_dims=[16, 32, 32, 64], depths=[1, 1, 1, 1], head_dim=16, mlp_ratio=2)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('type_name', ['BiFormer', 'mmattn.BiFormer'])
def test_backbone_builds_from_downstream_scopes(scope, type_name):
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    init_default_scope(scope)
    model = registry.build(dict(type=type_name, arch=TINY, n_win=4))
    assert isinstance(model, BiFormer)


def test_registered_into_mmpretrain():
    # Building anything from mmpretrain's registry imports mmpretrain.models, which needs
    # torchvision (no CPU build for torch 2.13); the registration itself must be there.
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    assert PRETRAIN_MODELS._module_dict['BiFormer'] is BiFormer
    assert PRETRAIN_MODELS._module_dict['BiLevelRoutingAttention'] is BiLevelRoutingAttention


def test_ops_are_registered():
    from mmattn.registry import MODELS
    from mmdet.registry import MODELS as DET_MODELS
    init_default_scope('mmdet')
    assert MODELS.get('BiLevelRoutingAttention') is BiLevelRoutingAttention
    from mmattn.ops import NeighborhoodAttention
    assert DET_MODELS.get('NeighborhoodAttention') is NeighborhoodAttention
    from mmattn.models import DiNAT, NAT
    assert DET_MODELS.get('NAT') is NAT and DET_MODELS.get('mmattn.DiNAT') is DiNAT
    layer = DET_MODELS.build(dict(type='BiLevelRoutingAttention', embed_dims=32, num_heads=2,
                                  n_win=2, topk=2))
    assert isinstance(layer, BiLevelRoutingAttention)


def test_unknown_type_error_names_it():
    from mmdet.registry import MODELS as DET_MODELS
    init_default_scope('mmdet')
    with pytest.raises(KeyError, match='BiFormerX'):
        DET_MODELS.build(dict(type='BiFormerX'))


@pytest.fixture
def scratch_registries(monkeypatch):
    """register_model into a scratch mmattn registry and one scratch downstream registry, so
    that nothing registered here reaches the real ones."""
    from mmengine.registry import Registry

    import mmattn.registry as reg
    own = Registry('model', scope='mmattn_scratch')
    downstream = Registry('model', scope='downstream_scratch')
    monkeypatch.setattr(reg, 'MODELS', own)
    monkeypatch.setattr(reg, '_downstream_model_registries', lambda: [downstream])
    return own, downstream


def _class(name, module):
    return type(name, (), {'__module__': module, '__qualname__': name})


def test_a_different_class_of_the_same_name_is_refused(scratch_registries):
    from mmattn.registry import register_model
    own, downstream = scratch_registries
    upstream = _class('BiFormer', 'upstream.models')
    downstream.register_module(module=upstream)
    ours = _class('BiFormer', 'mmattn.models.backbones.biformer')
    with pytest.raises(KeyError, match=r"mmattn\.models\.backbones\.biformer\.BiFormer as "
                       r"'BiFormer' in downstream_scratch's model registry: "
                       r'upstream\.models\.BiFormer is registered'):
        register_model(ours)
    assert downstream.get('BiFormer') is upstream  # left as it was
    assert 'BiFormer' not in own._module_dict  # nothing registered anywhere
    register_model(ours, name='MMAttnBiFormer')  # another name is free
    assert downstream.get('MMAttnBiFormer') is ours
    with pytest.raises(KeyError, match=r"in mmattn_scratch's model registry: "
                       r'mmattn\.models\.backbones\.biformer\.BiFormer is registered'):
        register_model(_class('BiFormer', 'other.plugin'), name='MMAttnBiFormer')


def test_the_same_class_again_is_fine(scratch_registries):
    from mmattn.registry import register_model
    _, downstream = scratch_registries
    cls = _class('SomeBlock', 'mmattn.plug.blocks')
    downstream.register_module(module=cls)
    assert register_model(cls) is cls
    # a reloaded module makes a new class object with the same module and qualified name
    reloaded = _class('SomeBlock', 'mmattn.plug.blocks')
    downstream.register_module(module=reloaded, force=True)
    assert register_model(cls) is cls and downstream.get('SomeBlock') is cls


def test_every_mmattn_class_is_the_downstream_entry_of_its_name():
    from mmdet.registry import MODELS as DET_MODELS

    from mmattn.registry import MODELS
    for key, cls in MODELS._module_dict.items():
        assert DET_MODELS._module_dict[key] is cls
