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
