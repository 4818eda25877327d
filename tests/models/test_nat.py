"""NAT / DiNAT backbones and their official-checkpoint converter.

The official code is not available here: official-layout state dicts are built from the key
table of the official SHI-Labs models with random weights, and the official dense forward (NATTEN
0.14/0.15 module semantics: maps smaller than K*d zero padded after the LayerNorm) is re-derived
below on those *official* keys with ``neighborhood_attention_2d_reference``, independently of
mmattn's module structure.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from mmattn.converters import CheckpointKeyError, convert_checkpoint
from mmattn.models import DiNAT, NAT
from mmattn.models.backbones.base import normalize_arch
from mmattn.models.backbones.nat import DILATION_SCHEDULES, NATBlock, expand_dilations
from mmattn.ops.neighborhood import neighborhood_attention_2d_reference

# E=16, head_dim 8 (heads 2/4/8/16) keeps the dense reference cheap; mlp 2 as NAT-S/B
LS_ARCH = dict(embed_dims=16, depths=[1, 2, 2, 1], num_heads=[2, 4, 8, 16], mlp_ratio=2.,
               kernel_size=5, layer_scale=1e-5)
PLAIN_ARCH = dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[2, 4, 8, 16], mlp_ratio=3.,
                  kernel_size=3)
TINY_ARCH = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], mlp_ratio=2.)


def official_state_dict(arch, classifier=True, out_norms=False, num_classes=10, seed=0,
                        dtype=torch.float64, device=None):
    """Official key names and shapes (classification / det-seg backbone); random values that make
    mistakes visible: LayerNorm weights 1 +- 0.2 with non-zero biases, non-zero rpb tables,
    gammas around 1."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.2):
        if device == 'meta':
            return torch.empty(*shape, device='meta')
        return torch.randn(*shape, generator=g, dtype=dtype) * scale

    def affine(prefix, c):
        return {f'{prefix}.weight': 1 + rnd(c), f'{prefix}.bias': rnd(c)}

    def linear(prefix, out_c, in_c):
        return {f'{prefix}.weight': rnd(out_c, in_c, scale=in_c**-0.5),
                f'{prefix}.bias': rnd(out_c)}

    arch = normalize_arch(arch)  # the arch_zoo schema: per-stage embed_dims and mlp_ratios
    e, k = arch['embed_dims'][0], arch.get('kernel_size', 7)
    sd = {'patch_embed.proj.0.weight': rnd(e // 2, 3, 3, 3, scale=0.3),
          'patch_embed.proj.0.bias': rnd(e // 2),
          'patch_embed.proj.1.weight': rnd(e, e // 2, 3, 3, scale=0.3),
          'patch_embed.proj.1.bias': rnd(e), **affine('patch_embed.norm', e)}
    for i, (depth, heads) in enumerate(zip(arch['depths'], arch['num_heads'])):
        c = e * 2**i
        hidden = int(c * arch['mlp_ratios'][i])
        for j in range(depth):
            p = f'levels.{i}.blocks.{j}'
            sd.update(affine(f'{p}.norm1', c))
            sd.update(linear(f'{p}.attn.qkv', 3 * c, c))
            sd[f'{p}.attn.rpb'] = rnd(heads, 2 * k - 1, 2 * k - 1, scale=1.)
            sd.update(linear(f'{p}.attn.proj', c, c))
            sd.update(affine(f'{p}.norm2', c))
            sd.update(linear(f'{p}.mlp.fc1', hidden, c))
            sd.update(linear(f'{p}.mlp.fc2', c, hidden))
            if arch.get('layer_scale') is not None:
                sd[f'{p}.gamma1'] = 1 + rnd(c)  # ~1, not 1e-5: keeps the branches visible
                sd[f'{p}.gamma2'] = 1 + rnd(c)
        if i < 3:
            sd[f'levels.{i}.downsample.reduction.weight'] = rnd(2 * c, c, 3, 3, scale=0.1)
            sd.update(affine(f'levels.{i}.downsample.norm', 2 * c))
    if classifier:
        sd.update(affine('norm', 8 * e))
        sd.update(linear('head', num_classes, 8 * e))
    if out_norms:
        for i in range(4):
            sd.update(affine(f'norm{i}', e * 2**i))
    return sd


def official_na_module(sd, p, t, kernel_size, dilation):
    """NATTEN 0.14/0.15 NeighborhoodAttention2D on official keys: zero-pad the (normalised)
    input at bottom/right to K*d, qkv, NA with rpb, merge heads, crop, proj."""
    b, h, w, c = t.shape
    need = kernel_size * dilation
    t = F.pad(t, (0, 0, 0, max(need - w, 0), 0, max(need - h, 0)))
    hp, wp = t.shape[1:3]
    rpb = sd[f'{p}.rpb']
    heads = rpb.shape[0]
    qkv = F.linear(t, sd[f'{p}.qkv.weight'], sd[f'{p}.qkv.bias'])
    # [q | k | v] blocks of C channels, heads contiguous inside each block
    q, k, v = qkv.reshape(b, hp, wp, 3, heads, c // heads).unbind(3)  # (B, H, W, heads, D)
    out = neighborhood_attention_2d_reference(q, k, v, kernel_size, dilation, rpb=rpb)
    out = out.reshape(b, hp, wp, c)[:, :h, :w]  # head-major merge, crop
    return F.linear(out, sd[f'{p}.proj.weight'], sd[f'{p}.proj.bias'])


def official_dense_forward(sd, x, kernel_size, dilations):
    """Official det/seg NAT backbone forward (eval), on official keys."""

    def ln(t, p):
        c = t.shape[-1]
        w = sd.get(f'{p}.weight', torch.ones(c, dtype=t.dtype))
        bias = sd.get(f'{p}.bias', torch.zeros(c, dtype=t.dtype))
        return F.layer_norm(t, (c, ), w, bias, 1e-5)

    x = F.conv2d(x, sd['patch_embed.proj.0.weight'], sd['patch_embed.proj.0.bias'], 2, 1)
    x = F.conv2d(x, sd['patch_embed.proj.1.weight'], sd['patch_embed.proj.1.bias'], 2, 1)
    x = ln(x.permute(0, 2, 3, 1), 'patch_embed.norm')
    outs = []
    for i in range(4):
        j = 0
        while f'levels.{i}.blocks.{j}.norm1.weight' in sd:
            p = f'levels.{i}.blocks.{j}'
            a = official_na_module(sd, f'{p}.attn', ln(x, f'{p}.norm1'), kernel_size,
                                   dilations[i][j])
            x = x + sd.get(f'{p}.gamma1', 1.) * a
            m = F.linear(ln(x, f'{p}.norm2'), sd[f'{p}.mlp.fc1.weight'], sd[f'{p}.mlp.fc1.bias'])
            m = F.linear(F.gelu(m), sd[f'{p}.mlp.fc2.weight'], sd[f'{p}.mlp.fc2.bias'])
            x = x + sd.get(f'{p}.gamma2', 1.) * m
            j += 1
        outs.append(ln(x, f'norm{i}').permute(0, 3, 1, 2))  # classification files: 1 / 0
        if i < 3:
            x = F.conv2d(x.permute(0, 3, 1, 2), sd[f'levels.{i}.downsample.reduction.weight'],
                         None, 2, 1)
            x = ln(x.permute(0, 2, 3, 1), f'levels.{i}.downsample.norm')
    return outs


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize('size', [(224, 224), (333, 517), (64, 64), (45, 37)])
def test_output_shapes_any_size(size):
    # 64x64 and 45x37 put levels 2-3 (and 1) below K=7: the padding path
    model = NAT(arch=TINY_ARCH).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    h, w = size
    assert len(outs) == 4
    for i, (out, stride) in enumerate(zip(outs, (4, 8, 16, 32))):
        assert out.shape == (1, 16 * 2**i, math.ceil(h / stride), math.ceil(w / stride))
        assert out.is_contiguous() and torch.isfinite(out).all()


def test_dinat_detection_schedule_on_small_images():
    # 'coco' needs 196-token maps at level 0 (d=28): a 160x200 image pads in every level
    arch = dict(TINY_ARCH, depths=[3, 4, 6, 5])
    model = DiNAT(arch=arch, dilations='coco').eval()
    assert model.dilations == [[1, 28, 1], [1, 7, 1, 14], [1, 3, 1, 5, 1, 7], [1, 3, 1, 3, 1]]
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 160, 200))
    assert [tuple(o.shape[1:]) for o in outs] == [(16, 40, 50), (32, 20, 25), (64, 10, 13),
                                                   (128, 5, 7)]


def test_out_indices_subset_and_output_norms():
    model = NAT(arch=TINY_ARCH, out_indices=(1, 2)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 64]
    assert not hasattr(model, 'norm0') and not hasattr(model, 'norm3')
    # norm{i} only normalises the returned copy: scaling norm1 changes output 0 only
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.norm1.weight.mul_(3)
        after = model(x)
    torch.testing.assert_close(after[0], 3 * before[0])
    torch.testing.assert_close(after[1], before[1], rtol=0, atol=0)


# ----------------------------------------------------------------------- small-map padding


@pytest.mark.parametrize('hw,kernel,dilation', [((10, 13), 7, 3), ((9, 30), 5, 2),
                                                ((5, 4), 7, 1)])
def test_padding_path_equals_explicit_zero_pad_before_qkv(hw, kernel, dilation):
    torch.manual_seed(0)
    block = NATBlock(32, 4, kernel, dilation, mlp_ratio=2., layer_scale=0.5).double().eval()
    with torch.no_grad():
        for p in block.parameters():  # non-trivial LN affine, qkv bias, rpb
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(2, *hw, 32, dtype=torch.float64)
    h, w = hw
    need = kernel * dilation
    with torch.no_grad():
        # explicit: LN, zero rows/cols appended AFTER the norm, full module, crop
        n1 = block.norm1(x)
        padded = F.pad(n1, (0, 0, 0, max(need - w, 0), 0, max(need - h, 0)))
        assert padded.shape[1:3] == (max(h, need), max(w, need))
        a = block.attn(padded)[:, :h, :w]
        ref = x + block.gamma1 * a
        ref = ref + block.gamma2 * block.mlp(block.norm2(ref))
        out = block(x)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        # the padded tokens are not masked: their k/v are the qkv bias, so changing that bias
        # on the k/v part changes the output of real queries (a masked variant would not)
        block.attn.qkv.bias[32:].add_(1.)
        assert not torch.allclose(block(x), out)


def test_no_padding_when_the_map_is_large_enough():
    torch.manual_seed(0)
    block = NATBlock(16, 2, 3, 2).eval()
    x = torch.randn(1, 6, 7, 16)  # 6 = K*d exactly: no padding
    with torch.no_grad():
        torch.testing.assert_close(block.attention(x), block.attn(x), rtol=0, atol=0)
        with pytest.raises(ValueError, match='kernel_size'):
            block.attn(x[:, :5])  # the op itself refuses; the block pads instead
        assert block.attention(x[:, :5]).shape == (1, 5, 7, 16)


# ------------------------------------------------------------------------- arch / options


def test_variants_parameter_counts_and_layer_scale():
    # recomputed from the official layer shapes (with a 1000-class head and the classifier norm,
    # without norm0..3)
    expected = [(NAT, 'mini', {}, 19.98), (NAT, 'tiny', {}, 27.90), (NAT, 'small', {}, 50.74),
                (DiNAT, 'small', {}, 50.72), (NAT, 'base', {}, 89.77),
                (DiNAT, 'base', {}, 89.77), (DiNAT, 'large', {}, 200.94),
                (DiNAT, 'large', dict(kernel_size=11), 201.14)]
    for cls, arch, kwargs, millions in expected:
        with torch.device('meta'):
            model = cls(arch, **kwargs)
        e = model.embed_dims[0]
        classifier = n_params(model) - sum(2 * c for c in model.embed_dims) \
            + 2 * 8 * e + 8 * e * 1000 + 1000
        assert round(classifier / 1e6, 2) == millions, (cls.__name__, arch)
        has_gamma = hasattr(model.levels[0].blocks[0], 'gamma1')
        # official variants: layer scale for NAT-S, NAT-B, DiNAT-B only
        assert has_gamma == ((cls, arch) in {(NAT, 'small'), (NAT, 'base'), (DiNAT, 'base')})
        if has_gamma:
            assert model.levels[2].blocks[5].gamma2.shape == (4 * e, )
    with torch.device('meta'):
        model = NAT('tiny')
    assert model.embed_dims == [64, 128, 256, 512]
    blk = model.levels[3].blocks[4]
    assert blk.attn.rpb.shape == (16, 13, 13) and blk.mlp.fc1.out_features == 3 * 512
    assert len(list(model.buffers())) == 0  # the official model has no buffers


def test_named_dilation_schedules():
    mini, tiny = [3, 4, 6, 5], [3, 4, 18, 5]
    assert expand_dilations('imagenet', mini)[2] == [1, 2, 1, 2, 1, 2]
    assert expand_dilations('imagenet', tiny) == [[1, 8, 1], [1, 4, 1, 4], [1, 2] * 9, [1] * 5]
    assert expand_dilations('imagenet384', tiny)[:3] == [[1, 13, 1], [1, 6, 1, 6], [1, 3] * 9]
    assert expand_dilations('coco', tiny)[2] == [1, 3, 1, 5, 1, 7] * 3
    assert expand_dilations('ade20k', mini) == [[1, 16, 1], [1, 4, 1, 8], [1, 2, 1, 3, 1, 4],
                                                [1, 2, 1, 2, 1]]
    assert expand_dilations('ade20k_large', tiny)[:2] == [[1, 20, 1], [1, 5, 1, 10]]
    assert expand_dilations('ade20k_large', tiny)[2][-4:] == [1, 5, 1, 5]
    assert expand_dilations(None, [1, 2, 1, 1]) == [[1], [1, 1], [1], [1]]
    for name in DILATION_SCHEDULES:  # first block of every level is undilated
        assert all(level[0] == 1 for level in expand_dilations(name, tiny))
    with torch.device('meta'):
        model = DiNAT('tiny')  # default: the 224 ImageNet schedule
    assert model.levels[0].blocks[1].attn.dilation == 8
    assert model.levels[2].blocks[17].attn.dilation == 2
    with torch.device('meta'):
        model = NAT('mini', dilations='ade20k')
    assert [b.attn.dilation for b in model.levels[1].blocks] == [1, 4, 1, 8]
    assert all(b.attn.dilation == 1 for lv in NAT(TINY_ARCH).levels for b in lv.blocks)


def test_frozen_stages_and_norm_eval():
    model = NAT(arch=TINY_ARCH, frozen_stages=2, norm_eval=True)
    model.train()
    frozen = [model.patch_embed, model.levels[0], model.levels[1], model.norm0, model.norm1]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    assert not model.levels[1].downsample.reduction.weight.requires_grad
    for module in (model.levels[2], model.levels[3], model.norm2, model.norm3):
        assert module.training
        assert all(p.requires_grad for p in module.parameters())
    # norm_eval: NAT has no BatchNorm, LayerNorms keep training (no running statistics)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert model.levels[2].blocks[0].norm1.training
    outs = model(torch.randn(1, 3, 64, 64))
    sum(o.sum() for o in outs).backward()
    assert model.patch_embed.proj[0].weight.grad is None
    assert model.levels[2].blocks[0].attn.rpb.grad is not None


def test_drop_path_rate_is_linear_over_blocks():
    model = NAT(arch=PLAIN_ARCH, drop_path_rate=0.35)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.
             for lv in model.levels for b in lv.blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.35, 8))


def test_default_init_is_the_official_classification_init():
    torch.manual_seed(0)
    model = NAT(arch=dict(TINY_ARCH, embed_dims=64, num_heads=[2, 4, 8, 16]))
    model.init_weights()
    qkv = model.levels[3].blocks[0].attn.qkv
    # timm/mmengine trunc_normal_(std=.02) clips at +-2 absolute, i.e. practically a normal
    assert abs(qkv.weight.std().item() - 0.02) < 0.002
    assert torch.count_nonzero(qkv.bias) == 0
    rpb = model.levels[0].blocks[0].attn.rpb
    assert 0 < rpb.std().item() < 0.05


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_registered_in_downstream_scopes(scope):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    init_default_scope(scope)
    for type_name, cls in (('NAT', NAT), ('mmattn.NAT', NAT), ('DiNAT', DiNAT),
                           ('mmattn.DiNAT', DiNAT)):
        model = registry.build(dict(type=type_name, arch=TINY_ARCH, dilations=None))
        assert type(model) is cls
    assert PRETRAIN_MODELS._module_dict['DiNAT'] is DiNAT


# ------------------------------------------------------------------------------- converter


def test_converter_is_a_checked_identity():
    sd = official_state_dict(LS_ARCH)
    converted = convert_checkpoint('nat', sd)  # raw state dict, as the official IN-1K files
    assert all(converted[k] is v for k, v in sd.items() if not k.startswith(('norm.', 'head.')))
    assert 'head.weight' not in converted and 'norm.weight' not in converted
    assert torch.equal(converted['norm2.weight'], torch.ones(64))
    assert torch.equal(converted['norm3.bias'], torch.zeros(128))
    assert len(converted) == len(sd) - 4 + 8
    det = official_state_dict(LS_ARCH, classifier=False, out_norms=True)
    ckpt = {'state_dict': {**{f'backbone.{k}': v for k, v in det.items()},
                           'neck.lateral_convs.0.conv.weight': torch.zeros(1)}, 'meta': {}}
    converted = convert_checkpoint('dinat', ckpt)
    assert converted.keys() == det.keys()
    assert all(converted[k] is v for k, v in det.items())


@pytest.mark.parametrize('cls,arch,entries', [(NAT, 'small', 469), (DiNAT, 'small', 409),
                                              (DiNAT, 'base', 469), (NAT, 'mini', 253)])
def test_converter_full_size_official_layout_loads_strict(cls, arch, entries):
    cfg = cls.arch_zoo[arch]
    sd = official_state_dict(cfg, num_classes=1000, device='meta')
    assert len(sd) == entries  # 13 per block (+2 gammas), 6 tokenizer, 9 downsamplers, 4 classifier
    converted = convert_checkpoint(cls.family, {'model': sd})
    with torch.device('meta'):
        model = cls(arch)
    model.load_state_dict(converted, strict=True, assign=True)
    if cfg['layer_scale'] is None:  # e.g. a NAT-S file (gammas) does not fit DiNAT-S
        gammas = official_state_dict(dict(cfg, layer_scale=1e-5), device='meta')
        with pytest.raises(RuntimeError, match='Unexpected key.*levels.0.blocks.0.gamma1'):
            model.load_state_dict(convert_checkpoint('nat', gammas), strict=True, assign=True)


@pytest.mark.parametrize('case', ['nat_layer_scale_224', 'nat_layer_scale_padded',
                                  'dinat_det_padded'])
def test_converted_checkpoint_gives_official_outputs(case):
    if case.startswith('nat'):
        arch, dilations = LS_ARCH, [[1], [1, 1], [1, 1], [1]]
        sd = official_state_dict(arch, seed=1)  # classification file: norm0..3 added as 1 / 0
        ckpt = sd
        # 112 px: level maps 28/14/7/4 vs K=5 -> only level 3 pads; 52x76: levels 2-3 pad
        size = (112, 112) if case.endswith('224') else (52, 76)
        model = NAT(arch=arch)
    else:
        arch = PLAIN_ARCH
        dilations = [[1, 4], [1, 3], [2, 1], [1, 2]]
        sd = official_state_dict(arch, classifier=False, out_norms=True, seed=2)
        ckpt = {'state_dict': {f'backbone.{k}': v for k, v in sd.items()}}
        # level maps 16x25, 8x13, 4x7, 2x4: K*d = 12/9/6/6 -> padding on one or both axes
        size = (61, 99)
        model = DiNAT(arch=arch, dilations=dilations)
    model = model.double().eval()
    model.load_state_dict(convert_checkpoint('dinat' if 'dinat' in case else 'nat', ckpt),
                          strict=True)
    x = torch.randn(1, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        outs = model(x)
        ref = official_dense_forward(sd, x, arch['kernel_size'], dilations)
    for out, r in zip(outs, ref):
        assert out.shape == r.shape
        torch.testing.assert_close(out, r, rtol=0, atol=1e-10)


def test_converter_lists_unknown_and_missing_keys():
    sd = official_state_dict(TINY_ARCH)
    bad = dict(sd, **{'levels.0.blocks.0.attn.relative_position_bias_table': torch.zeros(1),
                      'extra.thing': torch.zeros(1)})
    with pytest.raises(CheckpointKeyError, match='2 unknown keys: extra.thing, '
                       'levels.0.blocks.0.attn.relative_position_bias_table'):
        convert_checkpoint('nat', bad)
    incomplete = {k: v for k, v in sd.items() if not k.startswith('levels.2.blocks.0.mlp')}
    with pytest.raises(CheckpointKeyError,
                       match=r'missing \(4\): levels.2.blocks.0.mlp.fc1.bias, .*mlp.fc2.weight'):
        convert_checkpoint('nat', incomplete)
    no_rpb = {k: v for k, v in sd.items() if k != 'levels.1.blocks.0.attn.rpb'}
    with pytest.raises(CheckpointKeyError, match=r'missing \(1\): levels.1.blocks.0.attn.rpb'):
        convert_checkpoint('dinat', no_rpb)  # NATTEN >= 0.17 builds no rpb unless asked: a
        # missing rpb must not pass silently


def test_init_cfg_pretrained_from_official_files(tmp_path):
    sd = official_state_dict(TINY_ARCH, seed=3, dtype=torch.float32)
    converted = convert_checkpoint('nat', sd)
    official, det = tmp_path / 'nat_tiny.pth', tmp_path / 'det.pth'
    torch.save(sd, official)  # the official IN-1K files are raw state dicts
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in converted.items()},
                'meta': {}}, det)
    for cls, path, prefix in ((NAT, official, None), (DiNAT, official, None),
                              (DiNAT, det, 'backbone')):
        model = cls(arch=TINY_ARCH, dilations=None,
                    init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix=prefix))
        model.init_weights()
        for k, v in model.state_dict().items():
            assert torch.equal(v, converted[k]), k
    model = NAT(arch=TINY_ARCH, out_indices=(3, ),
                init_cfg=dict(type='Pretrained', checkpoint=str(official)))
    model.init_weights()  # unused output norms are dropped, everything else strict
    assert torch.equal(model.levels[3].blocks[0].attn.rpb,
                       sd['levels.3.blocks.0.attn.rpb'])


# ---------------------------------------------------------------- argument errors

# (class, overrides of its tiny variant test_arch, what the ValueError must say)
ARGUMENT_ERRORS = [
    (NAT, dict(kernel_size=4), 'odd integer'),
    (NAT, dict(arch='huge'), "Unknown NAT arch 'huge'"),
    (NAT, dict(arch='large'), "Unknown NAT arch 'large'"),  # a DiNAT-only arch
    (NAT, dict(arch=dict(embed_dims=16, depths=[1, 1, 1, 1])), 'must be a dict with keys'),
    (NAT, dict(arch=dict(NAT.test_arch['arch'], window_size=7)), 'must be a dict with keys'),
    (NAT, dict(arch=dict(NAT.test_arch['arch'], depths=[1, 1, 1])), r"arch\['depths'\] needs 4"),
    (NAT, dict(arch=dict(NAT.test_arch['arch'], num_heads=[1, 3, 4, 8])),
     'width 32 is not divisible by num_heads=3'),
    (DiNAT, dict(dilations=[[0], [1], [1], [1]]), 'dilations'),
    (DiNAT, dict(dilations='cityscapes'), "unknown dilation schedule 'cityscapes'"),
    (DiNAT, dict(dilations='coco'),
     r"'coco' does not fit depths \[1, 1, 1, 1\]: level 0 has 1 blocks but the schedule gives 3"),
    (DiNAT, dict(arch=dict(DiNAT.test_arch['arch'], depths=[3, 4, 4, 5]), dilations='ade20k'),
     'level 2 has 4 blocks'),
    (DiNAT, dict(dilations=[[1], [1, 2], [1], [1]]),
     r'dilations\[1\] has 2 values but level 1 has 1'),
    (DiNAT, dict(dilations=[[1], [1], [1]]), 'one list of per-block dilations per level'),
    (DiNAT, dict(dilations=[[1], [0], [1], [1]]), 'integers >= 1'),
]


@pytest.mark.parametrize('cls, overrides, message', ARGUMENT_ERRORS)
def test_argument_errors_name_the_problem(cls, overrides, message):
    with pytest.raises(ValueError, match=message):
        cls(**{**cls.test_arch, **overrides})
