"""BiFormer backbone and its official-checkpoint converter.

The official code is not available here: official-layout state dicts are built from the key
table of the official model (checkpoint['model'] of rayleizhu/BiFormer and its BiFormer_mm dense
backbone) with random weights, and the official dense forward is re-derived below on those
*official* keys, independently of mmattn's module structure.
"""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmattn.converters import CheckpointKeyError, convert_checkpoint
from mmattn.models import BiFormer
from mmattn.ops.routing import bra_reference, global_attention_lepe_reference

REPO = Path(__file__).resolve().parents[2]
SMALL_ARCH = dict(embed_dims=[32, 64, 128, 256], depths=[1, 1, 2, 1], head_dim=16, mlp_ratio=3)
TINY_ARCH = dict(embed_dims=[16, 32, 32, 64], depths=[1, 1, 1, 1], head_dim=16, mlp_ratio=2)


def official_state_dict(embed_dims, depths, mlp_ratio=3, classifier=True, out_norms=False,
                        num_classes=10, seed=0):
    """Official key names and shapes (classification model / dense backbone), random values that
    make mistakes visible."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    def bn(prefix, c):
        return {f'{prefix}.weight': 1 + rnd(c), f'{prefix}.bias': rnd(c),
                f'{prefix}.running_mean': rnd(c, scale=0.1),
                f'{prefix}.running_var': 1 + torch.rand(c, generator=g, dtype=torch.float64) * .5,
                f'{prefix}.num_batches_tracked': torch.tensor(100)}

    def affine(prefix, c):  # LayerNorm-like weights around 1, non-zero bias
        return {f'{prefix}.weight': 1 + rnd(c), f'{prefix}.bias': rnd(c)}

    def linear(prefix, out_c, in_c, bias=True):
        sd = {f'{prefix}.weight': rnd(out_c, in_c, scale=in_c**-0.5)}
        if bias:
            sd[f'{prefix}.bias'] = rnd(out_c)
        return sd

    def conv(prefix, out_c, in_c, k, groups=1):
        return {f'{prefix}.weight': rnd(out_c, in_c // groups, k, k, scale=0.3),
                f'{prefix}.bias': rnd(out_c)}

    c0 = embed_dims[0]
    sd = {**conv('downsample_layers.0.0', c0 // 2, 3, 3), **bn('downsample_layers.0.1', c0 // 2),
          **conv('downsample_layers.0.3', c0, c0 // 2, 3), **bn('downsample_layers.0.4', c0)}
    for i in range(1, 4):
        sd.update(conv(f'downsample_layers.{i}.0', embed_dims[i], embed_dims[i - 1], 3))
        sd.update(bn(f'downsample_layers.{i}.1', embed_dims[i]))
    for s, (c, depth) in enumerate(zip(embed_dims, depths)):
        hidden = int(mlp_ratio * c)
        for b in range(depth):
            p = f'stages.{s}.{b}'
            sd.update(conv(f'{p}.pos_embed', c, c, 3, groups=c))
            sd.update(affine(f'{p}.norm1', c))
            sd.update(affine(f'{p}.norm2', c))
            if s < 3:
                sd.update(linear(f'{p}.attn.qkv.qkv', 3 * c, c))
                sd.update(linear(f'{p}.attn.wo', c, c))
            else:
                sd.update(linear(f'{p}.attn.qkv', 3 * c, c, bias=False))
                sd.update(linear(f'{p}.attn.proj', c, c))
            sd.update(conv(f'{p}.attn.lepe', c, c, 5, groups=c))
            sd.update(linear(f'{p}.mlp.0', hidden, c))
            sd.update(linear(f'{p}.mlp.3', c, hidden))
    if classifier:
        sd.update(bn('norm', embed_dims[3]))
        sd.update(linear('head', num_classes, embed_dims[3]))
    if out_norms:
        for i, c in enumerate(embed_dims):
            sd.update(affine(f'extra_norms.{i}', c))
    return sd


def official_dense_forward(sd, x, n_win, head_dim, topks=(1, 4, 16), auto_pad=True):
    """Official ``BiFormer_mm.forward`` (eval mode) written from the official code's steps, on
    official keys."""

    def conv(t, p, stride=1, groups=1):
        w = sd[f'{p}.weight']
        return F.conv2d(t, w, sd[f'{p}.bias'], stride, w.shape[-1] // 2, groups=groups)

    def bn(t, p):
        return F.batch_norm(t, sd[f'{p}.running_mean'], sd[f'{p}.running_var'], sd[f'{p}.weight'],
                            sd[f'{p}.bias'], False, 0., 1e-5)

    def ln(t, p):
        return F.layer_norm(t, t.shape[-1:], sd[f'{p}.weight'], sd[f'{p}.bias'], 1e-6)

    x = bn(conv(x, 'downsample_layers.0.0', 2), 'downsample_layers.0.1')
    x = bn(conv(F.gelu(x), 'downsample_layers.0.3', 2), 'downsample_layers.0.4')
    outs = []
    for s in range(4):
        if s > 0:
            x = bn(conv(x, f'downsample_layers.{s}.0', 2), f'downsample_layers.{s}.1')
        c = x.shape[1]
        b = 0
        while f'stages.{s}.{b}.norm1.weight' in sd:
            p = f'stages.{s}.{b}'
            x = x + conv(x, f'{p}.pos_embed', groups=c)
            t = x.permute(0, 2, 3, 1)
            n1 = ln(t, f'{p}.norm1')
            if s < 3:
                a, _ = bra_reference(n1, sd[f'{p}.attn.qkv.qkv.weight'],
                                     sd[f'{p}.attn.qkv.qkv.bias'],
                                     sd[f'{p}.attn.lepe.weight'], sd[f'{p}.attn.lepe.bias'],
                                     sd[f'{p}.attn.wo.weight'], sd[f'{p}.attn.wo.bias'], n_win,
                                     topks[s], c // head_dim, auto_pad=auto_pad)
            else:
                a = global_attention_lepe_reference(n1, sd[f'{p}.attn.qkv.weight'],
                                                    sd[f'{p}.attn.lepe.weight'],
                                                    sd[f'{p}.attn.lepe.bias'],
                                                    sd[f'{p}.attn.proj.weight'],
                                                    sd[f'{p}.attn.proj.bias'], 8)
            t = t + a
            h = F.linear(ln(t, f'{p}.norm2'), sd[f'{p}.mlp.0.weight'], sd[f'{p}.mlp.0.bias'])
            t = t + F.linear(F.gelu(h), sd[f'{p}.mlp.3.weight'], sd[f'{p}.mlp.3.bias'])
            x = t.permute(0, 3, 1, 2)
            b += 1
        w = sd.get(f'extra_norms.{s}.weight', torch.ones(c, dtype=x.dtype))
        bias = sd.get(f'extra_norms.{s}.bias', torch.zeros(c, dtype=x.dtype))
        outs.append(F.layer_norm(x.permute(0, 2, 3, 1), (c, ), w, bias, 1e-6).permute(0, 3, 1, 2))
    return outs


# ----------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize('size', [(224, 224), (333, 517), (32, 32), (45, 37)])
def test_output_shapes_any_size(size):
    model = BiFormer(arch=TINY_ARCH, n_win=8).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    h, w = size
    for i, (out, stride) in enumerate(zip(outs, (4, 8, 16, 32))):
        assert out.shape == (1, TINY_ARCH['embed_dims'][i], math.ceil(h / stride),
                             math.ceil(w / stride))


def test_small_arch_shapes_and_parameter_count():
    model = BiFormer('small', n_win=16).eval()
    # official dense backbone: 25.02 M (S); base 56.04 M
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 25.02
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 96, 160))
    assert [o.shape[1:] for o in outs] == [(64, 24, 40), (128, 12, 20), (256, 6, 10), (512, 3, 5)]
    with torch.device('meta'):
        base = BiFormer('base')
    assert round(sum(p.numel() for p in base.parameters()) / 1e6, 2) == 56.04


def test_out_indices_subset():
    model = BiFormer(arch=TINY_ARCH, n_win=4, out_indices=(1, 3)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 64]
    assert not hasattr(model, 'norm0') and hasattr(model, 'norm3')


def test_output_norm_does_not_feed_the_trunk():
    model = BiFormer(arch=TINY_ARCH, n_win=4).eval()
    x = torch.randn(1, 3, 64, 64)
    before = model(x)
    with torch.no_grad():
        model.norm0.weight.mul_(3)
    after = model(x)
    assert not torch.allclose(before[0], after[0])
    for b, a in zip(before[1:], after[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_classifier_mode_rejects_non_divisible_input():
    model = BiFormer(arch=TINY_ARCH, n_win=7, auto_pad=False).eval()
    model(torch.randn(1, 3, 224, 224))
    with pytest.raises(ValueError, match='divisible by n_win=7'):
        model(torch.randn(1, 3, 256, 256))  # the official classifier rejects 256x256 too


# ------------------------------------------------------------------------- training knobs


def test_frozen_stages():
    model = BiFormer(arch=TINY_ARCH, n_win=4, frozen_stages=2)
    model.train()
    frozen = [model.stem, model.stages[0], model.stages[1], model.norm0, model.norm1]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    for module in (model.stages[2], model.stages[3], model.norm2, model.norm3):
        assert module.training
        assert all(p.requires_grad for p in module.parameters())


def test_norm_eval_keeps_batchnorm_in_eval_mode():
    model = BiFormer(arch=TINY_ARCH, n_win=4, norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 5 and all(not m.training for m in bns)
    running = model.stem.bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(model.stem.bn1.running_mean, running)
    assert model.stages[0].blocks[0].training


def test_drop_path_rate_is_linear_over_blocks():
    model = BiFormer(arch=SMALL_ARCH, n_win=4, drop_path_rate=0.3)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.
             for s in model.stages for b in s.blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.3, 5))


# ------------------------------------------------------------------------------- converter


@pytest.mark.parametrize('arch,entries', [('tiny', 264), ('small', 518), ('base', 518)])
def test_converter_official_classification_layout_loads_strict(arch, entries):
    cfg = BiFormer.arch_zoo[arch]
    sd = official_state_dict(cfg['embed_dims'], cfg['depths'], num_classes=1000)
    assert len(sd) == entries  # official file entry counts, incl. num_batches_tracked
    converted = convert_checkpoint('biformer', {'model': sd})
    with torch.device('meta'):
        model = BiFormer(arch)
    model.load_state_dict(converted, strict=True, assign=True)
    # every tensor of the meta-device model was replaced by one from the converted checkpoint
    assert not [k for k, v in model.state_dict().items() if v.is_meta]


def test_converter_is_a_pure_renaming():
    sd = official_state_dict(SMALL_ARCH['embed_dims'], SMALL_ARCH['depths'], out_norms=True,
                             classifier=False)
    converted = convert_checkpoint('biformer', {'state_dict': sd})
    assert torch.equal(converted['stages.1.blocks.0.attn.qkv.weight'],
                       sd['stages.1.0.attn.qkv.qkv.weight'])
    assert converted['stages.1.blocks.0.attn.qkv.bias'] is sd['stages.1.0.attn.qkv.qkv.bias']
    assert converted['stages.0.blocks.0.attn.proj.weight'] is sd['stages.0.0.attn.wo.weight']
    assert converted['stem.bn2.running_var'] is sd['downsample_layers.0.4.running_var']
    assert converted['stages.3.downsample.conv.weight'] is sd['downsample_layers.3.0.weight']
    assert converted['norm2.bias'] is sd['extra_norms.2.bias']
    assert 'stages.3.blocks.0.attn.qkv.bias' not in converted  # stage 4 stays bias-free
    assert len(converted) == len(sd)


@pytest.mark.parametrize('layout', ['classification', 'detection'])
def test_converted_checkpoint_gives_official_outputs(layout):
    cls = layout == 'classification'
    sd = official_state_dict(SMALL_ARCH['embed_dims'], SMALL_ARCH['depths'], classifier=cls,
                             out_norms=not cls)
    if cls:
        ckpt, n_win, size = {'model': sd}, 7, (224, 224)  # ImageNet setting, no padding
    else:  # an mmdet checkpoint: backbone-prefixed, with neck keys that must be ignored
        ckpt = {'state_dict': {**{f'backbone.{k}': v for k, v in sd.items()},
                               'neck.lateral_convs.0.conv.weight': torch.zeros(1)},
                'meta': {'epoch': 12}}
        n_win, size = 4, (75, 101)  # padding in every BRA stage
    model = BiFormer(arch=SMALL_ARCH, n_win=n_win, auto_pad=not cls).double().eval()
    model.load_state_dict(convert_checkpoint('biformer', ckpt), strict=True)
    x = torch.randn(1, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        outs = model(x)
        ref = official_dense_forward(sd, x, n_win, SMALL_ARCH['head_dim'], auto_pad=not cls)
    for out, r in zip(outs, ref):
        torch.testing.assert_close(out, r, rtol=0, atol=1e-10)


def test_converter_lists_unknown_and_missing_keys():
    sd = official_state_dict(SMALL_ARCH['embed_dims'], SMALL_ARCH['depths'])
    bad = dict(sd, **{'stages.0.0.attn.foo.weight': torch.zeros(1), 'extra.thing': torch.zeros(1)})
    with pytest.raises(CheckpointKeyError,
                       match='2 unknown keys: extra.thing, stages.0.0.attn.foo'):
        convert_checkpoint('biformer', {'model': bad})
    incomplete = {k: v for k, v in sd.items() if not k.startswith('stages.2.1.mlp')}
    with pytest.raises(CheckpointKeyError, match=r'missing \(4\): .*stages.2.blocks.1.ffn'):
        convert_checkpoint('biformer', {'model': incomplete})
    with pytest.raises(ValueError, match="no converter for 'swin'"):
        convert_checkpoint('swin', {'model': sd})


def test_init_cfg_pretrained_from_official_and_converted_files(tmp_path):
    sd = official_state_dict(SMALL_ARCH['embed_dims'], SMALL_ARCH['depths'], seed=3)
    converted = convert_checkpoint('biformer', {'model': sd})
    official_file, det_file = tmp_path / 'official.pth', tmp_path / 'det.pth'
    torch.save({'model': sd}, official_file)
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in converted.items()},
                'meta': {}}, det_file)
    for path, prefix in ((official_file, None), (det_file, None), (det_file, 'backbone')):
        model = BiFormer(arch=SMALL_ARCH, n_win=4,
                         init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix=prefix))
        model.init_weights()
        for k, v in model.state_dict().items():
            assert torch.equal(v, converted[k].to(v.dtype)), k


@pytest.mark.slow
def test_convert_ckpt_tool(tmp_path):
    sd = official_state_dict(SMALL_ARCH['embed_dims'], SMALL_ARCH['depths'])
    src, dst = tmp_path / 'official.pth', tmp_path / 'out' / 'converted.pth'
    torch.save({'model': sd, 'args': {'lr': 1e-3}}, src)
    run = subprocess.run([sys.executable, str(REPO / 'tools/convert_ckpt.py'), 'biformer',
                          str(src), str(dst)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    state = torch.load(dst, weights_only=True)['state_dict']
    BiFormer(arch=SMALL_ARCH).load_state_dict(state, strict=True)
    broken = tmp_path / 'broken.pth'
    torch.save({'model': {'foo.weight': torch.zeros(1)}}, broken)
    run = subprocess.run([sys.executable, str(REPO / 'tools/convert_ckpt.py'), 'biformer',
                          str(broken), str(dst)], capture_output=True, text=True)
    assert run.returncode != 0 and 'unknown keys: foo.weight' in run.stderr


def test_pickled_objects_need_trusted(tmp_path):
    import argparse
    sd = official_state_dict(SMALL_ARCH['embed_dims'], SMALL_ARCH['depths'])
    path = tmp_path / 'release.pth'
    torch.save({'model': sd, 'args': argparse.Namespace(lr=1e-3)}, path)  # like many releases
    with pytest.raises(RuntimeError, match='--trusted'):
        convert_checkpoint('biformer', str(path))
    converted = convert_checkpoint('biformer', str(path), trusted=True)
    assert converted['stem.conv1.weight'].equal(sd['downsample_layers.0.0.weight'])


# ---------------------------------------------------------------- argument errors

# (class, overrides of its tiny variant test_arch, what the ValueError must say)
ARGUMENT_ERRORS = [
    (BiFormer, dict(topks=(1, 2, 100, -2)), 'topk'),
    (BiFormer, dict(arch='huge'), 'Unknown BiFormer arch'),
    (BiFormer, dict(arch=dict(embed_dims=[8, 16, 32, 64])), 'must be a dict with keys'),
    (BiFormer, dict(topks=(1, 4, 17, -2)), 'topk=17'),  # n_win=4: 16 regions
    (BiFormer, dict(n_win=(4, 4)), 'n_win needs one value per stage'),
]


@pytest.mark.parametrize('cls, overrides, message', ARGUMENT_ERRORS)
def test_argument_errors_name_the_problem(cls, overrides, message):
    with pytest.raises(ValueError, match=message):
        cls(**{**cls.test_arch, **overrides})
