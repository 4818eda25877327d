"""GroupMixFormer backbone and its official-checkpoint converter.

The official code is not available here: official-layout state dicts are built from the key
table of the official model (AILab-CVC/GroupMixFormer) with a deterministic fill, and the
official forward is re-derived below on those *official* keys (its own stem / patch-embedding
/ block code, attention by ``group_mix_attention_reference``), independently of mmattn's modules.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from mmattn.converters import CheckpointKeyError, convert_checkpoint
from mmattn.models import GroupMixFormer
from mmattn.ops.group_mix import batch_norm_formula, group_mix_attention_reference

F64 = torch.float64
# smallest legal widths (multiples of 10), one or two blocks per stage
TINY_ARCH = dict(embed_dims=[10, 20, 30, 40], depths=[1, 2, 1, 1], mlp_ratios=[2, 2, 4, 4])


def official_keys(arch, classifier=True, num_classes=1000):
    """Official key -> shape (downstream backbone)."""
    dims, shapes = arch['embed_dims'], {}

    def bn(prefix, c):
        shapes.update({f'{prefix}.{n}': (c, ) for n in
                       ('weight', 'bias', 'running_mean', 'running_var')})
        shapes[f'{prefix}.num_batches_tracked'] = ()

    c0 = dims[0]
    shapes.update({'conv_stem.proj1.weight': (c0 // 2, 3, 3, 3),
                   'conv_stem.proj1.bias': (c0 // 2, ),
                   'conv_stem.proj2.weight': (c0, c0 // 2, 3, 3),
                   'conv_stem.proj2.bias': (c0, )})
    bn('conv_stem.norm1', c0 // 2)
    bn('conv_stem.norm2', c0)
    for i, (c, depth) in enumerate(zip(dims, arch['depths'])):
        cin = dims[max(i - 1, 0)]
        seg, ch, hid = c // 5, c // 10, int(c * arch['mlp_ratios'][i])
        shapes[f'patch_embed_layers.{i}.proj.conv1.weight'] = (cin, 1, 3, 3)
        shapes[f'patch_embed_layers.{i}.proj.pointwise_conv.weight'] = (c, cin, 1, 1)
        bn(f'patch_embed_layers.{i}.norm', c)
        for j in range(depth):
            p = f'groupmixformer_backbone.{i}.gma_stage.{j}.'
            a = p + 'att.aggregator.'
            shapes.update({
                p + 'cpe.proj.weight': (c, 1, 3, 3), p + 'cpe.proj.bias': (c, ),
                p + 'norm1.weight': (c, ), p + 'norm1.bias': (c, ),
                p + 'att.qkv.weight': (3 * c, c), p + 'att.qkv.bias': (3 * c, ),
                p + 'att.proj.weight': (c, c), p + 'att.proj.bias': (c, ),
                a + 'agg0.conv.conv1.weight': (3 * seg, 1, 3, 3),
                a + 'agg0.conv.pointwise_conv.weight': (seg, 3 * seg, 1, 1),
                a + 'agg0.norm.weight': (seg, ), a + 'agg0.norm.bias': (seg, ),
                p + 'norm2.weight': (c, ), p + 'norm2.bias': (c, ),
                p + 'mlp.fc1.weight': (hid, c), p + 'mlp.fc1.bias': (hid, ),
                p + 'mlp.fc2.weight': (c, hid), p + 'mlp.fc2.bias': (c, )})
            for g, k in ((1, 3), (2, 5), (3, 7)):
                shapes[a + f'agg{g}.conv1.weight'] = (seg, 1, k, k)
                shapes[a + f'agg{g}.pointwise_conv.weight'] = (seg, seg, 1, 1)
            for g in range(4):
                bn(a + f'norm{g}', seg)
            for m, (k, heads) in enumerate(((3, 2), (5, 3), (7, 3))):
                shapes[p + f'att.crpe.conv_list.{m}.weight'] = (heads * ch, 1, k, k)
                shapes[p + f'att.crpe.conv_list.{m}.bias'] = (heads * ch, )
    if classifier:
        bn('norm4', dims[3])
        shapes.update({'head.weight': (num_classes, dims[3]), 'head.bias': (num_classes, )})
    return shapes


def official_state_dict(arch, classifier=True, num_classes=1000, dtype=F64, device=None):
    """A deterministic fill (every tensor matters, activations stay bounded)."""
    shapes = official_keys(arch, classifier, num_classes)
    sd = {}
    for j, key in enumerate(sorted(shapes)):
        shape = shapes[key]
        if key.endswith('num_batches_tracked'):
            sd[key] = torch.tensor(0, device=device)
            continue
        if device == 'meta':
            sd[key] = torch.empty(shape, device='meta')
            continue
        n = math.prod(shape)
        base = torch.sin(0.37 * torch.arange(n, dtype=F64) + 1.3 * j).reshape(shape)
        if key.endswith('running_var'):
            value = 1 + 0.5 * base**2
        elif key.endswith('running_mean'):
            value = 0.1 * base
        elif key.endswith('bias'):
            value = 0.02 * base
        elif len(shape) == 1:
            value = 1 + 0.1 * base
        else:
            gain = 0.1 if key.endswith(('att.proj.weight', 'mlp.fc2.weight',
                                        'cpe.proj.weight')) else 1.
            value = gain * base / math.sqrt(n / shape[0])
        sd[key] = value.to(dtype)
    return sd


def spec_input(b=2, h=64, w=96):
    return torch.sin(0.013 * torch.arange(b * 3 * h * w, dtype=F64)).reshape(b, 3, h, w)


def official_attention(sd, prefix, y, hw, training):
    """Group-mix attention of the official block at ``prefix`` ('...att.'), by
    ``group_mix_attention_reference`` from the official tensors, BatchNorm from its formula."""

    def t(name):
        return sd[prefix + name]

    def bn(g):
        n = f'aggregator.norm{g}.'
        return batch_norm_formula(t(n + 'weight'), t(n + 'bias'), t(n + 'running_mean'),
                                  t(n + 'running_var'), training)

    return group_mix_attention_reference(
        y, hw, t('qkv.weight'), t('qkv.bias'),
        [(t(f'aggregator.agg{g}.conv1.weight'), t(f'aggregator.agg{g}.pointwise_conv.weight'))
         for g in (1, 2, 3)], [bn(g) for g in range(4)],
        [t(f'crpe.conv_list.{m}.weight') for m in range(3)],
        [t(f'crpe.conv_list.{m}.bias') for m in range(3)],
        t('aggregator.agg0.conv.conv1.weight'), t('aggregator.agg0.conv.pointwise_conv.weight'),
        t('aggregator.agg0.norm.weight'), t('aggregator.agg0.norm.bias'), t('proj.weight'),
        t('proj.bias'))


def official_forward(sd, x, training=False):
    """Official GroupMixFormer downstream forward (return_interm_layers)."""

    def bn(t, p):
        return F.batch_norm(t, sd[p + '.running_mean'].clone(), sd[p + '.running_var'].clone(),
                            sd[p + '.weight'], sd[p + '.bias'], training, 0.1, 1e-5)

    x = F.hardswish(bn(F.conv2d(x, sd['conv_stem.proj1.weight'], sd['conv_stem.proj1.bias'],
                                2, 1), 'conv_stem.norm1'))
    x = F.hardswish(bn(F.conv2d(x, sd['conv_stem.proj2.weight'], sd['conv_stem.proj2.bias'],
                                2, 1), 'conv_stem.norm2'))
    outs = []
    for i in range(4):
        p = f'patch_embed_layers.{i}.'
        x = F.conv2d(x, sd[p + 'proj.conv1.weight'], None, 2 if i else 1, 1, groups=x.shape[1])
        x = F.hardswish(bn(F.conv2d(x, sd[p + 'proj.pointwise_conv.weight']), p + 'norm'))
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        j = 0
        while f'groupmixformer_backbone.{i}.gma_stage.{j}.norm1.weight' in sd:
            p = f'groupmixformer_backbone.{i}.gma_stage.{j}.'
            img = x.transpose(1, 2).reshape(b, c, h, w)
            x = (img + F.conv2d(img, sd[p + 'cpe.proj.weight'], sd[p + 'cpe.proj.bias'],
                                padding=1, groups=c)).flatten(2).transpose(1, 2)
            y = F.layer_norm(x, (c, ), sd[p + 'norm1.weight'], sd[p + 'norm1.bias'], 1e-6)
            x = x + official_attention(sd, p + 'att.', y, (h, w), training)
            y = F.layer_norm(x, (c, ), sd[p + 'norm2.weight'], sd[p + 'norm2.bias'], 1e-6)
            y = F.gelu(F.linear(y, sd[p + 'mlp.fc1.weight'], sd[p + 'mlp.fc1.bias']))
            x = x + F.linear(y, sd[p + 'mlp.fc2.weight'], sd[p + 'mlp.fc2.bias'])
            j += 1
        x = x.transpose(1, 2).reshape(b, c, h, w)
        outs.append(x)
    return outs


def _model(arch=TINY_ARCH, sd=None, **kwargs):
    model = GroupMixFormer(arch=arch, **kwargs).double()
    if sd is not None:
        model.load_state_dict(convert_checkpoint('groupmixformer', {'model': sd}), strict=True)
    return model


# --------------------------------------------------- numerics vs the official forward


@pytest.mark.parametrize('training', [False, True])
def test_converted_checkpoint_gives_official_outputs(training):
    sd = official_state_dict(TINY_ARCH)
    model = _model(sd=sd).train(training)
    x = spec_input()
    with torch.no_grad():
        outs = model(x)
        ref = official_forward(sd, x, training)
    for i, (out, r) in enumerate(zip(outs, ref)):
        assert out.shape == (2, TINY_ARCH['embed_dims'][i], 64 // 2**(i + 2), 96 // 2**(i + 2))
        assert out.is_contiguous()
        torch.testing.assert_close(out, r, rtol=0, atol=1e-10)
        assert r.abs().max() < 10  # the fill keeps activations bounded


def test_small_arch_full_depth_official_outputs():
    """The real M widths (40/80/160/160, seg 8..32, head widths 4..16), depths cut to 1."""
    arch = dict(GroupMixFormer.arch_zoo['miny'], depths=[1, 1, 1, 1])
    sd = official_state_dict(arch, classifier=False)
    model = _model(arch, sd).eval()
    x = spec_input(1, 64, 64)
    with torch.no_grad():
        for out, r in zip(model(x), official_forward(sd, x)):
            torch.testing.assert_close(out, r, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------ shapes and sizes


@pytest.mark.parametrize('h, w', [(32, 32), (33, 47), (65, 100), (96, 40)])
def test_any_size_pads_inside_and_crops(h, w):
    model = _model(sd=official_state_dict(TINY_ARCH)).eval()
    x = spec_input(1, h, w)
    hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
    with torch.no_grad():
        outs = model(x)
        # == the official model on the zero-padded input (mmdet's pad_size_divisor=32), cropped
        padded = official_forward(official_state_dict(TINY_ARCH), F.pad(x, (0, wp - w, 0, hp - h)))
    for i, (out, ref) in enumerate(zip(outs, padded)):
        s = 2**(i + 2)
        assert out.shape[2:] == (math.ceil(h / s), math.ceil(w / s))
        assert out.is_contiguous()
        torch.testing.assert_close(out, ref[:, :, :out.shape[2], :out.shape[3]], rtol=0,
                                   atol=1e-10)


def test_out_indices_and_stride():
    model = _model(out_indices=(1, 3)).eval()
    outs = model(torch.randn(1, 3, 64, 64, dtype=F64))
    assert [tuple(o.shape) for o in outs] == [(1, 20, 8, 8), (1, 40, 2, 2)]
    outs = _model(out_indices=(-4, )).eval()(torch.randn(1, 3, 64, 64, dtype=F64))
    assert [tuple(o.shape) for o in outs] == [(1, 10, 16, 16)]


# ------------------------------------------------------------------------- arch / options


@pytest.mark.parametrize('arch, backbone, full', [
    ('miny', 5.572, 5.733), ('tiny', 10.708, 10.949), ('small', 22.100, 22.421),
    ('base', 45.345, 45.827), ('large', 71.352, 71.834)])
def test_parameter_counts_match_the_official_models(arch, backbone, full):
    with torch.device('meta'):
        model = GroupMixFormer(arch)
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 3) == backbone
    c3 = model.embed_dims[3]
    assert round((n + 2 * c3 + 1000 * c3 + 1000) / 1e6, 3) == full  # + norm4 (BN) + head


def test_frozen_stages_and_norm_eval():
    model = GroupMixFormer(TINY_ARCH, frozen_stages=2, norm_eval=True)
    model.train()
    for module in (model.stem, model.stages[0], model.stages[1]):
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 2 + 4 + 5 * 4  # stem, patch embeddings, 4 aggregator BNs per block
    assert all(not m.training for m in bns)  # norm_eval
    running = model.stages[3].blocks[0].attn.aggregators[2].norm.running_mean.clone()
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.sum() for o in outs).backward()
    assert torch.equal(running, model.stages[3].blocks[0].attn.aggregators[2].norm.running_mean)
    assert model.stem.conv1.weight.grad is None
    assert model.stages[2].blocks[0].attn.qkv.weight.grad is not None
    model = GroupMixFormer(TINY_ARCH).train()  # without norm_eval the aggregator BNs train
    assert model.stages[3].blocks[0].attn.aggregators[2].norm.training


def test_with_cp_same_outputs_and_grads():
    torch.manual_seed(0)
    model = _model().eval()  # eval: BN running stats; train-mode BN is covered above
    cp_model = _model(with_cp=True).eval()
    cp_model.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 96, dtype=F64, requires_grad=True)
    outs, cp_outs = model(x), cp_model(x)
    sum((o * o).sum() for o in outs).backward()
    sum((o * o).sum() for o in cp_outs).backward()
    for o, c in zip(outs, cp_outs):
        torch.testing.assert_close(o, c)
    for (name, p), (_, q) in zip(model.named_parameters(), cp_model.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_drop_path_rate_is_linear_over_blocks():
    model = GroupMixFormer(TINY_ARCH, drop_path_rate=0.3)
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for s in model.stages for b in s.blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.3, 5))
    model.train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    a = model(x)[3]
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x)[3])  # stochastic in training


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_registered_in_downstream_scopes(scope):
    from mmengine.registry import init_default_scope
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    init_default_scope(scope)
    for name in ('GroupMixFormer', 'mmattn.GroupMixFormer'):
        assert type(registry.build(dict(type=name, arch=TINY_ARCH))) is GroupMixFormer


# ------------------------------------------------------------------------------- converter


@pytest.mark.parametrize('arch, keys', [('small', 1149), ('miny', None), ('base', None),
                                        ('large', None)])
def test_converter_full_size_official_layout_loads_strict(arch, keys):
    cfg = GroupMixFormer.arch_zoo[arch]
    sd = official_state_dict(cfg, device='meta')
    if keys is not None:
        assert len(sd) == keys  # official S: 1149 keys, 1142 without norm4/head
    converted = convert_checkpoint('groupmixformer', {'model': sd})
    assert len(converted) == len(sd) - 7
    with torch.device('meta'):
        model = GroupMixFormer(arch)
    model.load_state_dict(converted, strict=True, assign=True)


def test_converter_renames_without_touching_tensors():
    sd = official_state_dict(TINY_ARCH)
    converted = convert_checkpoint('groupmixformer', {'model': sd})
    kept = {k: v for k, v in sd.items() if not k.startswith(('norm4.', 'head.'))}
    assert len(converted) == len(kept)
    assert sorted(id(v) for v in converted.values()) == sorted(id(v) for v in kept.values())
    p = 'groupmixformer_backbone.1.gma_stage.1.att.aggregator.'
    assert converted['stages.1.blocks.1.attn.local_branch.conv.dw.weight'] is \
        sd[p + 'agg0.conv.conv1.weight']
    assert converted['stages.1.blocks.1.attn.aggregators.0.norm.running_var'] is \
        sd[p + 'norm0.running_var']
    assert converted['stages.0.patch_embed.conv.pw.weight'] is \
        sd['patch_embed_layers.0.proj.pointwise_conv.weight']
    # an mmattn-layout file (converted, or a detector's backbone.*) passes through unchanged
    det = {'state_dict': {f'backbone.{k}': v for k, v in converted.items()}, 'meta': {}}
    again = convert_checkpoint('groupmixformer', det)
    assert again.keys() == converted.keys() and all(again[k] is converted[k] for k in again)


def test_converter_lists_unknown_and_missing_keys():
    sd = official_state_dict(TINY_ARCH)
    bad = dict(sd, **{'local_net.0.weight': torch.zeros(1), 'cls_token1': torch.zeros(1)})
    with pytest.raises(CheckpointKeyError, match='2 unknown keys: cls_token1, local_net.0.weight'):
        convert_checkpoint('groupmixformer', {'model': bad})
    p = 'groupmixformer_backbone.2.gma_stage.0.att.crpe.conv_list.1.'
    incomplete = {k: v for k, v in sd.items() if not k.startswith(p)}
    with pytest.raises(CheckpointKeyError, match=r'missing \(2\): stages.2.blocks.0.attn.crpe.1'):
        convert_checkpoint('groupmixformer', {'model': incomplete})
    with pytest.raises(CheckpointKeyError, match='not a GroupMixFormer checkpoint'):
        convert_checkpoint('groupmixformer', {'model': {'conv_stem.proj1.weight': torch.zeros(1)}})


def test_init_cfg_pretrained_from_official_and_detector_files(tmp_path):
    sd = official_state_dict(TINY_ARCH, dtype=torch.float32)
    converted = convert_checkpoint('groupmixformer', {'model': sd})
    official, det = tmp_path / 'groupmixformer_tiny.pth', tmp_path / 'det.pth'
    torch.save({'model': sd}, official)  # the official extract_clean_ckpt.py layout
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in converted.items()}}, det)
    for path, prefix in ((official, None), (det, 'backbone')):
        model = GroupMixFormer(TINY_ARCH, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                                        prefix=prefix))
        model.init_weights()
        for k, v in model.state_dict().items():
            assert torch.equal(v, converted[k]), k


# ---------------------------------------------------------------- argument errors

# (class, overrides of its tiny variant test_arch, what the ValueError must say)
ARGUMENT_ERRORS = [
    (GroupMixFormer, dict(arch=dict(GroupMixFormer.test_arch['arch'], embed_dims=[12, 40, 60, 80])),
     'embed_dims'),
    (GroupMixFormer, dict(arch='huge'), "Unknown GroupMixFormer arch 'huge'.*'small'"),
    (GroupMixFormer, dict(arch=dict(embed_dims=[10] * 4, depths=[1] * 4)),
     'must be a dict with keys'),
    (GroupMixFormer, dict(arch=dict(GroupMixFormer.test_arch['arch'], depths=[1, 1, 1])),
     r"arch\['depths'\] needs 4 values"),
    (GroupMixFormer, dict(arch=dict(GroupMixFormer.test_arch['arch'], embed_dims=[20, 25, 60, 80])),
     r"arch\['embed_dims'\]\[1\].*divisible by 10.*25"),
    (GroupMixFormer, dict(arch=dict(GroupMixFormer.test_arch['arch'], depths=[1, 0, 1, 1])),
     r"arch\['depths'\] must be integers >= 1"),
]


@pytest.mark.parametrize('cls, overrides, message', ARGUMENT_ERRORS)
def test_argument_errors_name_the_problem(cls, overrides, message):
    with pytest.raises(ValueError, match=message):
        cls(**{**cls.test_arch, **overrides})
