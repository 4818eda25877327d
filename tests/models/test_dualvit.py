"""Dual-ViT backbone and its official-checkpoint converter.

The official code is not available here: official-layout state dicts are built from the key
table of the official model (YehLi/ImageNetModel, Dual-ViT) with random weights (layer scales ~1
instead of 1e-6, LayerNorm affines away from 1/0, non-trivial BN statistics, so that mistakes
show), and the official *classification* trunk (with the last block's MergeFFN and norm4 on the
pixel tokens) is re-derived below, functionally, on those official keys. The converted weights
in mmattn's downstream backbone must reproduce its stage outputs.
"""
import pytest
import torch
import torch.nn.functional as F

from mmattn.converters import CheckpointKeyError, convert_checkpoint
from mmattn.models import DualViT

TINY = dict(stem_hidden=8, embed_dims=[16, 32, 48, 64], num_heads=[2, 2, 3, 4],
            depths=[1, 2, 2, 2], mlp_ratios=[4, 4, 4, 3])
DT = torch.float64


def official_state_dict(arch, classifier=True, seed=0, device=None, num_classes=10):
    """Official key names and shapes, random values."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.2):
        if device == 'meta':
            return torch.empty(*shape, device='meta')
        return torch.randn(*shape, generator=g, dtype=DT) * scale

    def ln(p, c):
        return {f'{p}.weight': 1 + rnd(c), f'{p}.bias': rnd(c)}

    def lin(p, out_c, in_c):
        return {f'{p}.weight': rnd(out_c, in_c, scale=in_c**-0.5), f'{p}.bias': rnd(out_c)}

    def gamma(c):
        return 1 + rnd(c, scale=0.25)

    def ffn(p, c, hidden):
        return {**lin(f'{p}.fc1', hidden, c), f'{p}.dwconv.dwconv.weight': rnd(hidden, 1, 3, 3),
                f'{p}.dwconv.dwconv.bias': rnd(hidden), **lin(f'{p}.fc2', c, hidden)}

    dims, sh = arch['embed_dims'], arch['stem_hidden']
    c1 = dims[0]
    sd = {'q': rnd(64, c1, scale=1.), **ln('q_embed.0', c1), **lin('q_embed.1', c1, c1),
          **lin('kv', 2 * c1, c1), **ln('proxy_ln', c1), **lin('se.0', c1, c1),
          **lin('se.2', 2 * c1, c1)}
    for i, (conv, cin, k) in enumerate([(0, 3, 7), (3, sh, 3), (6, sh, 3)]):
        sd[f'patch_embed1.conv.{conv}.weight'] = rnd(sh, cin, k, k, scale=(cin * k * k)**-0.5)
        bn = f'patch_embed1.conv.{conv + 1}'
        sd.update({f'{bn}.weight': 1 + rnd(sh), f'{bn}.bias': rnd(sh),
                   f'{bn}.running_mean': rnd(sh), f'{bn}.running_var': 1 + rnd(sh).abs(),
                   f'{bn}.num_batches_tracked': torch.tensor(7, device=device)})
    for s in range(1, 5):
        c = dims[s - 1]
        cin = sh if s == 1 else dims[s - 2]
        sd.update(lin(f'patch_embed{s}.proj', c, cin * 9))
        sd[f'patch_embed{s}.proj.weight'] = rnd(c, cin, 3, 3, scale=(cin * 9)**-0.5)
        sd.update(ln(f'patch_embed{s}.norm', c))
        if s > 1:
            sd.update(lin(f'proxy_embed{s}.proj_proxy.0', c, cin))
            sd.update(ln(f'proxy_embed{s}.proj_proxy.1', c))
        for j in range(arch['depths'][s - 1]):
            p = f'block{s}.{j}'
            ratio = arch['mlp_ratios'][s - 1] - (1 if s == 3 and j % 2 else 0)
            sd.update({f'{p}.gamma1': gamma(c), f'{p}.gamma2': gamma(c), **ln(f'{p}.norm1', c),
                       **ln(f'{p}.norm2', c), **lin(f'{p}.attn.q', c, c),
                       **lin(f'{p}.attn.kv', 2 * c, c), **lin(f'{p}.attn.proj', c, c),
                       **ffn(f'{p}.mlp', c, int(c * ratio))})
            if s <= 2:
                a = f'{p}.attn'
                sd.update({f'{a}.gamma1': gamma(c), f'{a}.gamma2': gamma(c),
                           f'{a}.gamma3': gamma(c), **lin(f'{a}.q_proxy', c, c),
                           **lin(f'{a}.kv_proxy', 2 * c, c), **ln(f'{a}.q_proxy_ln', c),
                           **ln(f'{a}.p_ln', c), **lin(f'{a}.mlp_proxy.0', 4 * c, c),
                           **lin(f'{a}.mlp_proxy.2', c, 4 * c), **ln(f'{a}.proxy_ln', c),
                           **ln(f'{a}.qkv_proxy.0', c), **lin(f'{a}.qkv_proxy.1', 3 * c, c)})
            elif classifier or (s, j) != (4, arch['depths'][3] - 1):
                sd.update({**lin(f'{p}.mlp.fc_proxy.0', 2 * c, c),
                           **lin(f'{p}.mlp.fc_proxy.2', c, 2 * c)})
        sd.update(ln(f'norm{s}', c))
        if s < 4:
            sd.update(ln(f'norm_proxy{s}', c))
    if classifier:
        c = dims[3]
        p = 'post_network.0'
        sd.update({**ln(f'{p}.norm1', c), **ln(f'{p}.norm2', c), **lin(f'{p}.attn.q', c, c),
                   **lin(f'{p}.attn.kv', 2 * c, c), **lin(f'{p}.attn.proj', c, c),
                   **lin(f'{p}.mlp.fc1', 2 * c, c), **lin(f'{p}.mlp.fc2', c, 2 * c),
                   **lin('head', num_classes, c), **lin('aux_head', num_classes, c)})
    return sd


# --------------------------------------------- official classification trunk, on official keys


def _ln(sd, p, x, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f'{p}.weight'], sd[f'{p}.bias'], eps)


def _lin(sd, p, x):
    return F.linear(x, sd[f'{p}.weight'], sd[f'{p}.bias'])


def _mhsa(q, kv, heads, kv_parts=2):
    """The official head split: (B, T, k*C) -> (k, B, h, T, d); explicit softmax attention."""
    b, tq, c = q.shape
    d = c // heads
    q = q.reshape(b, tq, heads, d).permute(0, 2, 1, 3)
    k, v = kv.reshape(b, kv.shape[1], kv_parts, heads, d).permute(2, 0, 3, 1, 4)[-2:]
    attn = torch.softmax(q @ k.transpose(-2, -1) * d**-0.5, dim=-1)
    return (attn @ v).transpose(1, 2).reshape(b, tq, c)


def _ffn(sd, p, x, hw):
    y = _lin(sd, f'{p}.fc1', x)
    b, n, c = y.shape
    y = F.conv2d(y.transpose(1, 2).reshape(b, c, *hw), sd[f'{p}.dwconv.dwconv.weight'],
                 sd[f'{p}.dwconv.dwconv.bias'], padding=1, groups=c)
    return _lin(sd, f'{p}.fc2', F.gelu(y.flatten(2).transpose(1, 2)))


def official_trunk(sd, x, arch):
    """The official classification model's norm1..norm4 pixel outputs (NCHW), eval mode."""
    y = x
    for conv, stride in ((0, 2), (3, 1), (6, 1)):
        w = sd[f'patch_embed1.conv.{conv}.weight']
        y = F.conv2d(y, w, stride=stride, padding=w.shape[-1] // 2)
        bn = f'patch_embed1.conv.{conv + 1}'
        y = F.relu(F.batch_norm(y, sd[f'{bn}.running_mean'], sd[f'{bn}.running_var'],
                                sd[f'{bn}.weight'], sd[f'{bn}.bias'], False, 0., 1e-5))
    feats = []
    for s in range(1, 5):
        y = F.conv2d(y, sd[f'patch_embed{s}.proj.weight'], sd[f'patch_embed{s}.proj.bias'], 2, 1)
        b, c, h, w = y.shape
        x = _ln(sd, f'patch_embed{s}.norm', y.flatten(2).transpose(1, 2), 1e-5)
        if s == 1:  # semantic-token init from the pooled stage-1 pixels
            x_down = F.avg_pool2d(x.transpose(1, 2).reshape(b, c, h, w), 7, 7)
            gh, gw = x_down.shape[2:]
            x_down = x_down.flatten(2).transpose(1, 2)
            kv = _lin(sd, 'kv', x_down)
            q = F.interpolate(sd['q'].reshape(8, 8, c).permute(2, 0, 1)[None], size=(gh, gw),
                              mode='bicubic', align_corners=False)[0].flatten(1).t()
            q = _lin(sd, 'q_embed.1', _ln(sd, 'q_embed.0', q, 1e-5))
            s_tok = _mhsa(q.expand(b, -1, -1), kv, 1)
            g = _lin(sd, 'se.2', F.relu(_lin(sd, 'se.0', (s_tok + x_down).mean(1))))
            g = g.reshape(b, 2, c).softmax(1)
            z = _ln(sd, 'proxy_ln', g[:, :1] * s_tok + g[:, 1:] * x_down, 1e-5)
        else:
            z = _ln(sd, f'proxy_embed{s}.proj_proxy.1', _lin(sd, f'proxy_embed{s}.proj_proxy.0',
                                                              z), 1e-5)
        heads = arch['num_heads'][s - 1]
        for j in range(arch['depths'][s - 1]):
            p = f'block{s}.{j}'
            if s <= 2:  # DualBlock
                a = f'{p}.attn'
                xn = _ln(sd, f'{p}.norm1', x, 1e-6)
                qkv = _lin(sd, f'{a}.qkv_proxy.1', _ln(sd, f'{a}.qkv_proxy.0', z, 1e-5))
                z = z + sd[f'{a}.gamma1'] * _mhsa(qkv[..., :c], qkv, heads, 3)
                qs = _lin(sd, f'{a}.q_proxy', _ln(sd, f'{a}.q_proxy_ln', z, 1e-5))
                z = z + _mhsa(qs, _lin(sd, f'{a}.kv_proxy', xn), heads) * sd[f'{a}.gamma2']
                hid = F.relu(_lin(sd, f'{a}.mlp_proxy.0', _ln(sd, f'{a}.p_ln', z, 1e-5)))
                z = z + sd[f'{a}.gamma3'] * _lin(sd, f'{a}.mlp_proxy.2', hid)
                kvs = _lin(sd, f'{a}.kv', _ln(sd, f'{a}.proxy_ln', z, 1e-5))
                out = _lin(sd, f'{a}.proj', _mhsa(_lin(sd, f'{a}.q', xn), kvs, heads))
                x = x + sd[f'{p}.gamma1'] * out
                x = x + sd[f'{p}.gamma2'] * _ffn(sd, f'{p}.mlp', _ln(sd, f'{p}.norm2', x, 1e-6),
                                                 (h, w))
            else:  # MergeBlock, classification (every block keeps its MergeFFN)
                t = torch.cat([x, z], 1)
                tn = _ln(sd, f'{p}.norm1', t, 1e-6)
                att = _mhsa(_lin(sd, f'{p}.attn.q', tn), _lin(sd, f'{p}.attn.kv', tn), heads)
                t = t + sd[f'{p}.gamma1'] * _lin(sd, f'{p}.attn.proj', att)
                tn = _ln(sd, f'{p}.norm2', t, 1e-6)
                sem = tn[:, h * w:]
                sem = _lin(sd, f'{p}.mlp.fc_proxy.2', F.gelu(_lin(sd, f'{p}.mlp.fc_proxy.0', sem)))
                t = t + sd[f'{p}.gamma2'] * torch.cat([_ffn(sd, f'{p}.mlp', tn[:, :h * w], (h, w)),
                                                       sem], 1)
                x, z = t[:, :h * w], t[:, h * w:]
        x = _ln(sd, f'norm{s}', x, 1e-6)
        if s < 4:
            z = _ln(sd, f'norm_proxy{s}', z, 1e-6)
        y = x.transpose(1, 2).reshape(b, c, h, w)
        feats.append(y)
    return feats


# ----------------------------------------------------------------------------------- tests


def test_official_key_table_and_classification_only_keys():
    arch = DualViT.arch_zoo['s']
    sd = official_state_dict(arch, device='meta')
    assert len(sd) == 562  # the official classification model (verified on its code)
    converted = convert_checkpoint('dualvit', sd)
    assert len(converted) == 540
    dropped = {k for k in sd if k not in converted and k not in
               ('q', 'q_embed.0.weight', 'q_embed.0.bias', 'q_embed.1.weight', 'q_embed.1.bias',
                'kv.weight', 'kv.bias', 'proxy_ln.weight', 'proxy_ln.bias', 'se.0.weight',
                'se.0.bias', 'se.2.weight', 'se.2.bias')}
    assert len(dropped) == 22
    assert {k for k in dropped if k.startswith('block')} == {
        f'block4.2.mlp.fc_proxy.{i}.{w}' for i in (0, 2) for w in ('weight', 'bias')}
    # the downstream backbone's own keys need no dropping (540 keys)
    assert len(convert_checkpoint('dualvit', official_state_dict(arch, False, device='meta'))) \
        == 540


@pytest.mark.parametrize('arch,params', [('s', 21.741), ('b', 38.448)])
def test_param_counts(arch, params):
    with torch.device('meta'):
        model = DualViT(arch)
    # official downstream backbone (no head, no last fc_proxy), verified on the official code
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 3) == params


@pytest.mark.parametrize('hw', [(61, 75), (230, 250)])
def test_converted_checkpoint_reproduces_official_trunk(tmp_path, hw):
    sd = official_state_dict(TINY, seed=1)
    path = tmp_path / 'checkpoint.pth'
    torch.save({'epoch': 3, 'state_dict': sd}, path)  # timm CheckpointSaver layout, no args
    model = DualViT(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path))).to(DT)
    model.init_weights()
    model.eval()
    converted = convert_checkpoint('dualvit', sd)
    own = model.state_dict()
    assert set(own) == set(converted)
    assert all(torch.equal(own[k], v) for k, v in converted.items())  # bit-identical
    assert torch.equal(own['semantic_init.query'], sd['q'])
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(2), dtype=DT)
    with torch.no_grad():
        outs = model(x)
        expected = official_trunk(sd, x, TINY)
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)


def test_converter_rejects_foreign_and_incomplete_checkpoints():
    sd = official_state_dict(TINY, device='meta')
    with pytest.raises(CheckpointKeyError, match='unknown keys: layers.0.weight'):
        convert_checkpoint('dualvit', {**sd, 'layers.0.weight': torch.empty(1)})
    broken = {k: v for k, v in sd.items() if k != 'block2.1.attn.p_ln.bias'}
    with pytest.raises(CheckpointKeyError, match=r'missing \(1\): block2.1.attn.p_ln.bias'):
        convert_checkpoint('dualvit', broken)
    # a converted file passes through unchanged (idempotent)
    once = convert_checkpoint('dualvit', sd)
    assert set(convert_checkpoint('dualvit', once)) == set(once)


@pytest.mark.parametrize('hw,shapes,grid', [
    ((224, 224), [(64, 56, 56), (128, 28, 28), (320, 14, 14), (448, 7, 7)], (8, 8)),
    ((230, 250), [(64, 58, 63), (128, 29, 32), (320, 15, 16), (448, 8, 8)], (8, 9)),
])
def test_small_shapes_and_semantic_token_count(hw, shapes, grid):
    torch.manual_seed(0)
    model = DualViT('s').eval()
    seen = []
    model.semantic_init.register_forward_hook(lambda m, a, out: seen.append(out.shape[1]))
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    # shapes verified on the official code; M = floor(H1/7) * floor(W1/7)
    assert [tuple(o.shape[1:]) for o in outs] == shapes
    assert seen == [grid[0] * grid[1]]
    assert all(o.is_contiguous() for o in outs)


@pytest.mark.parametrize('hw', [(25, 25), (32, 47), (97, 33)])
def test_odd_and_minimum_sizes(hw):
    model = DualViT(TINY, out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *hw))
    h, w = hw
    for out, stride, c in zip(outs, (8, 32), (32, 64)):
        assert out.shape == (2, c, -(-h // stride), -(-w // stride))


def test_frozen_stages_norm_eval_and_stem_bn():
    model = DualViT(TINY, frozen_stages=1, norm_eval=False,
                    stem_norm_cfg=dict(type='BN', requires_grad=False))
    model.train()
    frozen = ['patch_embed1', 'semantic_init', 'block1', 'norm1', 'norm_proxy1']
    for name, p in model.named_parameters():
        assert p.requires_grad == (name.split('.')[0] not in frozen), name
    assert not model.semantic_init.training and model.block2.training
    # frozen stem BN runs in eval mode; with frozen_stages=-1 and requires_grad=False (official
    # detection), the BN affine is fixed but its statistics still update
    official_det = DualViT(TINY, stem_norm_cfg=dict(type='BN', requires_grad=False)).train()
    bn = official_det.patch_embed1.conv[1]
    assert bn.training and not bn.weight.requires_grad
    before = bn.running_mean.clone()
    official_det(torch.randn(1, 3, 32, 32))
    assert not torch.equal(before, bn.running_mean)
    assert not DualViT(TINY, norm_eval=True).train().patch_embed1.conv[4].training


def test_drop_path_schedule():
    torch.manual_seed(0)
    model = DualViT(TINY, drop_path_rate=0.3)
    first = model.block1[0]  # rate 0: no DropPath at all
    assert isinstance(first.attn.drop_path, torch.nn.Identity)
    assert isinstance(first.drop_path, torch.nn.Identity)
    # dpr = linspace(0, rate, 7 blocks); DualBlocks share theirs with the attention's own DropPath
    assert model.block2[0].attn.drop_path.drop_prob == pytest.approx(0.3 / 6)
    assert model.block2[0].drop_path.drop_prob == pytest.approx(0.3 / 6)
    assert model.block4[1].drop_path.drop_prob == pytest.approx(0.3)
    assert model.block4[1].is_last and not model.block4[0].is_last


def test_default_init():
    model = DualViT(TINY)
    model.init_weights()
    assert torch.all(model.block3[1].gamma2 == 1e-6)
    assert torch.all(model.block1[0].attn.gamma3 == 1e-6)
    w = model.patch_embed1.conv[0].weight  # normal(0, sqrt(2 / (7*7*8)))
    assert 0.5 < w.std().item() / (2 / (7 * 7 * 8))**0.5 < 1.5
    assert 0.015 < model.semantic_init.query.std().item() < 0.025


def test_test_time_tiling():
    """The official mmseg test-time tiling, here with 64-px tiles: 64x160 -> column tiles [0, 64),
    [64, 128), [96, 160) (the last aligned to the image end); at stride 4 they land at columns
    [0, 16), [16, 32) and [24, 40), the last overwriting the overlap. Training and small inputs use
    the whole image."""
    torch.manual_seed(0)
    model = DualViT(TINY, out_indices=(0, 2), test_tile_size=64).eval()
    x = torch.randn(1, 3, 64, 160)
    with torch.no_grad():
        tiled = model(x)
        parts = [model(x[..., a:b]) for a, b in ((0, 64), (64, 128), (96, 160))]
        whole = model.forward_stages(x)
    assert [tuple(t.shape[2:]) for t in tiled] == [(16, 40), (4, 10)]
    for out, (left, mid, last), stride in zip(tiled, zip(*parts), (4, 16)):
        t = 64 // stride
        torch.testing.assert_close(out[..., :t], left, atol=0, rtol=0)
        torch.testing.assert_close(out[..., t:out.shape[-1] - t], mid[..., :out.shape[-1] - 2 * t],
                                   atol=0, rtol=0)
        torch.testing.assert_close(out[..., -t:], last, atol=0, rtol=0)
    assert not torch.allclose(tiled[0], whole[0])  # each tile has its own semantic tokens
    # 2 x 2 tiles without overlap: rows and columns concatenate
    grid = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        out = model(grid)[0]
        quads = [[model(grid[..., r:r + 64, c:c + 64])[0] for c in (0, 64)] for r in (0, 64)]
    torch.testing.assert_close(out, torch.cat([torch.cat(q, -1) for q in quads], -2),
                               atol=0, rtol=0)
    small = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(model(small)[1], model.forward_stages(small)[1])
    model.train()
    assert model(x)[0].shape == tiled[0].shape and model.training
    with pytest.raises(ValueError, match='test_tile_size must be None or a positive multiple'):
        DualViT(TINY, test_tile_size=100)


# ---------------------------------------------------------------- argument errors

# (class, overrides of its tiny variant test_arch, what the ValueError must say)
ARGUMENT_ERRORS = [
    (DualViT, dict(arch=dict(DualViT.test_arch['arch'], num_heads=[3, 2, 3, 4])), 'num_heads'),
    (DualViT, dict(arch='xl'), "Unknown DualViT arch 'xl'"),
    (DualViT, dict(arch={k: v for k, v in DualViT.test_arch['arch'].items()
                         if k != 'stem_hidden'}), 'exactly the keys'),
    (DualViT, dict(frozen_stages=5), 'frozen_stages'),
]


@pytest.mark.parametrize('cls, overrides, message', ARGUMENT_ERRORS)
def test_argument_errors_name_the_problem(cls, overrides, message):
    with pytest.raises(ValueError, match=message):
        cls(**{**cls.test_arch, **overrides})
