"""AttentionSwap: every op in the attention of mmdet Swin / PVTv2 and mmseg MiT (SegFormer).

Stock hosts are built small; their own state dict is the "stock checkpoint" (the layout mmdet
and mmseg checkpoints have). Loading is checked key by key: every host weight outside the
swapped attention comes from the file, the replaced attention is reported, nothing else passes.
"""
import copy

import pytest
import torch

from mmattn.converters.common import CheckpointKeyError
from mmattn.plug import PLUG_BLOCKS, AttentionSwap
from mmattn.registry import MODELS

HOSTS = {
    'swin': dict(type='mmdet.SwinTransformer', embed_dims=32, depths=[1, 1, 2, 1],
                 num_heads=[1, 2, 4, 8], window_size=7, out_indices=(0, 1, 2, 3)),
    'pvtv2': dict(type='mmdet.PyramidVisionTransformerV2', embed_dims=16, num_layers=[1, 1, 2, 1],
                  num_heads=[1, 2, 5, 8]),
    'mit': dict(type='mmseg.MixVisionTransformer', embed_dims=16, num_layers=[1, 1, 2, 1],
                num_heads=[1, 2, 5, 8]),
}
# the attention's parameter prefix and its output projection inside a host block
ATTN_PROJ = {'swin': 'attn.w_msa.proj.', 'pvtv2': 'attn.attn.out_proj.',
             'mit': 'attn.attn.out_proj.'}


def _stock(host):
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(HOSTS[host]))
    model.init_weights()
    return model


def _stage_block_names(host, stage):
    return {'swin': f'stages.{stage}.blocks.', 'pvtv2': f'layers.{stage}.1.',
            'mit': f'layers.{stage}.1.'}[host]


def _swap(host, op, checkpoint=None, **kwargs):
    torch.manual_seed(1)
    init_cfg = None if checkpoint is None else dict(type='Pretrained', checkpoint=checkpoint)
    model = AttentionSwap(backbone=copy.deepcopy(HOSTS[host]), attn=dict(type=op),
                          init_cfg=init_cfg, **kwargs)
    return model


@pytest.mark.parametrize('host', sorted(HOSTS))
@pytest.mark.parametrize('op', [cls.__name__ for cls in PLUG_BLOCKS])
def test_stock_weights_load_and_the_swapped_stage_starts_without_attention(host, op, tmp_path):
    stock = _stock(host)
    path = str(tmp_path / 'stock.pth')
    torch.save({'state_dict': stock.state_dict(), 'meta': {}}, path)
    model = _swap(host, op, path)
    model.init_weights()
    report = model.load_host_checkpoint(path)
    own = model.backbone.state_dict()
    stock_state = stock.state_dict()
    swapped = tuple(prefix for prefix, _ in model.swapped)
    # every host weight outside the swapped attention is the stock one, bit for bit
    assert report['loaded'] and all(torch.equal(own[k], stock_state[k]) for k in report['loaded'])
    assert set(report['loaded']) | set(report['new']) == set(own)
    assert report['new'] and all(k.startswith(swapped) for k in report['new'])
    assert report['not_used'] == sorted(k for k in stock_state if k.startswith(swapped))
    assert {p.split('.')[1] for p in swapped} == {'2', '3'}  # the default stages=(2, 3)
    # zero_init: the swapped attention outputs exact zeros, so the model equals the stock host
    # with the replaced attentions' output projections zeroed
    zeroed = copy.deepcopy(stock)
    with torch.no_grad():
        for name, p in zeroed.named_parameters():
            if name.startswith(swapped) and ATTN_PROJ[host] in name:
                p.zero_()
    model.eval()
    zeroed.eval()
    x = torch.randn(1, 3, 75, 101)
    with torch.no_grad():
        for ours, theirs in zip(model(x), zeroed(x)):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize('host', sorted(HOSTS))
def test_only_the_chosen_stages_and_blocks_are_swapped(host):
    model = _swap(host, 'NeighborhoodAttention2d', stages=(1, 2), blocks=[0])
    names = [prefix for prefix, _ in model.swapped]
    assert names == [_stage_block_names(host, 1) + '0.attn.',
                     _stage_block_names(host, 2) + '0.attn.']
    host_heads = HOSTS[host]['num_heads']
    assert [b.attn.num_heads for _, b in model.swapped] == host_heads[1:3]  # heads of the host
    assert all(not b.residual for _, b in model.swapped)  # the host block adds the residual


def test_swapped_blocks_train_and_odd_inputs_work():
    model = _swap('swin', 'SlideAttention2d')
    model.init_weights()
    model.train()
    x = torch.randn(2, 3, 67, 99)
    outs = model(x)
    assert [o.shape[-2:] for o in outs] == [(17, 25), (9, 13), (5, 7), (3, 4)]
    sum(o.mean() for o in outs).backward()
    block = model.swapped[0][1]
    assert block.attn.proj.weight.grad.abs().sum() > 0  # zero-init output still learns
    assert block.attn.shift_kernel_is_one_hot()  # Swin's init did not overwrite it


def test_host_pretrained_init_cfg_is_taken_over(tmp_path):
    stock = _stock('mit')
    path = str(tmp_path / 'mit.pth')
    torch.save(stock.state_dict(), path)
    host = dict(HOSTS['mit'], init_cfg=dict(type='Pretrained', checkpoint=path))
    model = AttentionSwap(backbone=host, attn=dict(type='BiLevelRoutingAttention2d', n_win=2))
    assert model.backbone.init_cfg is None and model.init_cfg['checkpoint'] == path
    model.init_weights()
    assert torch.equal(model.backbone.layers[0][0].projection.weight,
                       stock.layers[0][0].projection.weight)


def test_a_detector_checkpoint_loads_with_its_prefix(tmp_path):
    stock = _stock('pvtv2')
    state = {'backbone.' + k: v for k, v in stock.state_dict().items()}
    state['neck.conv.weight'] = torch.zeros(1)
    path = str(tmp_path / 'detector.pth')
    torch.save({'state_dict': state}, path)
    model = _swap('pvtv2', 'DualAttention2d')
    report = model.load_host_checkpoint(path, prefix='backbone')
    assert report['loaded'] and not report['classifier']
    with pytest.raises(CheckpointKeyError, match='unexpected'):
        model.load_host_checkpoint(path)  # no prefix: detector keys do not belong to the host


def test_classifier_and_final_norm_of_a_classification_checkpoint_are_reported(tmp_path):
    stock = _stock('swin')
    state = dict(stock.state_dict(), **{'head.weight': torch.zeros(10, 256),
                                        'norm.weight': torch.ones(256)})
    state = {k: v for k, v in state.items() if not k.startswith('norm3.')}
    path = str(tmp_path / 'classification.pth')
    torch.save(state, path)
    report = _swap('swin', 'GroupMixAttention2d').load_host_checkpoint(path)
    assert report['classifier'] == ['head.weight', 'norm.weight']
    assert report['output_norms'] == ['norm3.bias', 'norm3.weight']


def test_missing_or_misshaped_host_weights_are_one_error(tmp_path):
    stock = _stock('swin')
    state = stock.state_dict()
    kept = {k: v for k, v in state.items() if not k.startswith('stages.0.blocks.0.ffn.')}
    path = str(tmp_path / 'partial.pth')
    torch.save(kept, path)
    model = _swap('swin', 'NeighborhoodAttention2d')
    with pytest.raises(CheckpointKeyError) as err:
        model.load_host_checkpoint(path)
    assert 'missing' in str(err.value) and 'stages.0.blocks.0.ffn.' in str(err.value)
    wrong = dict(state, **{'patch_embed.projection.weight': torch.zeros(8, 3, 4, 4)})
    torch.save(wrong, path)
    with pytest.raises(CheckpointKeyError, match='shape mismatch'):
        model.load_host_checkpoint(path)


def test_bad_configs_are_clear_errors():
    with pytest.raises(TypeError, match='not a supported host'):
        AttentionSwap(backbone=dict(type='mmdet.ResNet', depth=18), attn=dict(
            type='NeighborhoodAttention2d'))
    with pytest.raises(TypeError, match='not an mmattn plug-in block') as error:
        _swap('swin', 'BiLevelRoutingAttention')
    assert all(cls.__name__ in str(error.value) for cls in PLUG_BLOCKS)  # the choices
    with pytest.raises(ValueError, match='stage 5 does not exist'):
        _swap('mit', 'SlideAttention2d', stages=(5, ))
    with pytest.raises(ValueError, match='block 3 does not exist: stage 2 of '
                       'MixVisionTransformer has 2 blocks'):
        _swap('mit', 'SlideAttention2d', stages=(2, ), blocks=[3])


def test_a_block_with_fixed_heads_keeps_them():
    """AttentionSwap reads ``fixed_heads`` from the block class (not its name): such a block
    gets no num_heads from the host."""
    from mmattn.plug import NeighborhoodAttention2d

    class OneHeadNA(NeighborhoodAttention2d):
        fixed_heads = 1

        def __init__(self, in_channels, num_heads=None, **kwargs):
            assert num_heads is None, num_heads
            super().__init__(in_channels, num_heads=self.fixed_heads, **kwargs)

    MODELS.register_module(module=OneHeadNA)  # mmattn's registry only, removed below
    try:
        # scoped name: an earlier test may leave mmseg as the default scope
        model = _swap('swin', 'mmattn.OneHeadNA')
    finally:
        MODELS._module_dict.pop('OneHeadNA')
    assert [b.attn.num_heads for _, b in model.swapped] == [1] * len(model.swapped)


@pytest.mark.parametrize('host', sorted(HOSTS))
def test_stages_and_blocks_follow_one_rule(host):
    """Distinct 0-based indices for both: stages=(2, 2) used to die with an AttributeError
    (the second pass met the already swapped block), stages=(-1,) was taken as the last stage
    while blocks=[-1] was refused."""
    op = 'SlideAttention2d'
    with pytest.raises(ValueError, match=r'stages \(2, 2\) names stage 2 more than once'):
        _swap(host, op, stages=(2, 2))
    with pytest.raises(ValueError, match=r'blocks \(1, 1\) names block 1 more than once'):
        _swap(host, op, stages=(2, ), blocks=(1, 1))
    with pytest.raises(ValueError, match=r'stage -1 does not exist: \w+ has 4 stages, indices '
                       r'0 to 3 \(0-based, no negative indices\)'):
        _swap(host, op, stages=(-1, ))
    with pytest.raises(ValueError, match=r'block -1 does not exist: stage 2 of \w+ has 2 blocks, '
                       r'indices 0 to 1 \(0-based, no negative indices\)'):
        _swap(host, op, stages=(2, ), blocks=[-1])
    for name, kwargs in (('stages', dict(stages=())), ('blocks', dict(blocks=[]))):
        with pytest.raises(ValueError, match=f'{name} is empty'):
            _swap(host, op, **kwargs)
    with pytest.raises(TypeError, match='stages must be a sequence of 0-based ints'):
        _swap(host, op, stages=2)
    with pytest.raises(TypeError, match='blocks must hold ints'):
        _swap(host, op, stages=[2], blocks=[1.0])
    # lists (as configs give them), any order
    assert _swap(host, op, stages=[3, 2], blocks=[0]).stages == (3, 2)
    assert len(_swap(host, op, stages=[2], blocks=[1, 0]).swapped) == 2


def test_stock_swin_t_detector_checkpoint_with_strict_key_accounting(tmp_path):
    """Swin-T as mmdet's swin configs build it, saved as a detector checkpoint (``backbone.``)."""
    swin_t = dict(type='mmdet.SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
                  num_heads=[3, 6, 12, 24], window_size=7, out_indices=(0, 1, 2, 3))
    torch.manual_seed(0)
    stock = MODELS.build(swin_t)
    path = str(tmp_path / 'mask-rcnn_swin-t.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in stock.state_dict().items()},
                'meta': {}}, path)
    model = AttentionSwap(backbone=swin_t, attn=dict(type='NeighborhoodAttention2d'),
                          init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    model.init_weights()
    report = model.load_host_checkpoint(path, prefix='backbone.')
    # stages 3-4 of Swin-T: 6 + 2 blocks, each W-MSA with qkv, proj, a bias table and its index
    assert len(model.swapped) == 8
    assert len(report['not_used']) == 8 * 6
    assert len(report['new']) == 8 * 5  # NA: qkv (w, b), rpb, proj (w, b)
    own = model.backbone.state_dict()
    assert all(torch.equal(own[k], stock.state_dict()[k]) for k in report['loaded'])
    assert len(report['loaded']) + len(report['new']) == len(own)
