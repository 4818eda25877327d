"""Slide-Swin / Slide-PVT backbones and the slide_swin converter (the released
slide_swin.py of LeapLabTHU/Slide-Transformer).

The converter round trip builds a random state dict in the *official* layout (its key names,
head-major qkv, 6-D slide tables, one-hot dep_conv, official PatchMerging order), runs it
through an official-layout reference forward written here from the released code (reference slide
attention, global MHSA with Swin's bias index, [x0, x1, x2, x3] merging) and compares it with
the converted mmattn backbone.
"""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from mmattn.converters import CheckpointKeyError, convert_checkpoint
from mmattn.converters.slide import _arch_of
from mmattn.models.backbones.slide import SlidePVT, SlideSwin
from mmattn.ops.slide import SlideAttention, one_hot_shift_kernel, slide_attention_reference

F64 = torch.float64
TINY = dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4])
IMG = 64  # global mode: stage-3/4 windows 4 and 2


def official_state_dict(arch=TINY, img=IMG, seed=0):
    """Random tensors with the released SlideSwinTransformer's keys and shapes."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=F64) * 0.2

    sd, c = {}, arch['embed_dims']
    sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'] = rand(c, 3, 4, 4), rand(c)
    sd['patch_embed.norm.weight'], sd['patch_embed.norm.bias'] = 1 + rand(c), rand(c)
    for i, (depth, heads) in enumerate(zip(arch['depths'], arch['num_heads'])):
        dim, side = c * 2**i, img // 2**(i + 2)
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}.'
            for n in ('norm1', 'norm2'):
                sd[p + n + '.weight'], sd[p + n + '.bias'] = 1 + rand(dim), rand(dim)
            sd[p + 'attn.qkv.weight'], sd[p + 'attn.qkv.bias'] = rand(3 * dim, dim), rand(3 * dim)
            sd[p + 'attn.proj.weight'], sd[p + 'attn.proj.bias'] = rand(dim, dim), rand(dim)
            sd[p + 'mlp.fc1.weight'], sd[p + 'mlp.fc1.bias'] = rand(4 * dim, dim), rand(4 * dim)
            sd[p + 'mlp.fc2.weight'], sd[p + 'mlp.fc2.bias'] = rand(dim, 4 * dim), rand(dim)
            if i < 2:
                d = dim // heads
                sd[p + 'attn.relative_position_bias_table'] = rand(1, heads, 1, 9, 1, 1)
                sd[p + 'attn.dep_conv.weight'] = one_hot_shift_kernel(d, 3).to(F64)
                sd[p + 'attn.dep_conv.bias'] = rand(9 * d)
                sd[p + 'attn.dep_conv1.weight'] = rand(9 * d, 1, 3, 3)
                sd[p + 'attn.dep_conv1.bias'] = rand(9 * d)
            else:
                sd[p + 'attn.relative_position_bias_table'] = rand((2 * side - 1)**2, heads)
                sd[p + 'attn.relative_position_index'] = swin_index(side)
        if i < 3:
            sd[f'layers.{i}.downsample.norm.weight'] = 1 + rand(4 * dim)
            sd[f'layers.{i}.downsample.norm.bias'] = rand(4 * dim)
            sd[f'layers.{i}.downsample.reduction.weight'] = rand(2 * dim, 4 * dim)
    sd['norm.weight'], sd['norm.bias'] = 1 + rand(8 * c), rand(8 * c)
    sd['head.weight'], sd['head.bias'] = rand(1000, 8 * c), rand(1000)
    return sd


def swin_index(side):
    """Swin's formula: (drow + W-1) * (2W-1) + (dcol + W-1), query minus key."""
    coords = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side),
                                        indexing='ij')).flatten(1).T
    rel = coords[:, None] - coords[None]
    return (rel[..., 0] + side - 1) * (2 * side - 1) + rel[..., 1] + side - 1


def _ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[name + '.weight'], sd[name + '.bias'])


def _lin(x, sd, name):
    return F.linear(x, sd[name + '.weight'], sd.get(name + '.bias'))


def _official_slide(x, sd, p, heads):
    b, h, w, c = x.shape
    d = c // heads
    qkv = _lin(x, sd, p + 'qkv').permute(0, 3, 1, 2).reshape(b, heads, 3, d, h, w)
    weight = sd[p + 'dep_conv.weight'] + sd[p + 'dep_conv1.weight']
    bias = sd[p + 'dep_conv.bias'] + sd[p + 'dep_conv1.bias']
    out = slide_attention_reference(*qkv.unbind(2), weight, bias,
                                    sd[p + 'relative_position_bias_table'].view(heads, 9))
    return _lin(out.reshape(b, c, h, w).permute(0, 2, 3, 1), sd, p + 'proj')


def _official_global(x, sd, p, heads):
    b, h, w, c = x.shape
    d = c // heads
    qkv = _lin(x.reshape(b, h * w, c), sd, p + 'qkv').view(b, h * w, 3, heads, d)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    bias = sd[p + 'relative_position_bias_table'][swin_index(h)].permute(2, 0, 1)
    attn = torch.softmax(q * d**-0.5 @ k.transpose(-2, -1) + bias, -1)
    out = (attn @ v).transpose(1, 2).reshape(b, h, w, c)
    return _lin(out, sd, p + 'proj')


def official_features(sd, x, arch=TINY):
    """Pre-merge stage features of the released model (eval mode)."""
    x = F.conv2d(x, sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'], stride=4)
    x = _ln(x.permute(0, 2, 3, 1), sd, 'patch_embed.norm')
    feats = []
    for i, (depth, heads) in enumerate(zip(arch['depths'], arch['num_heads'])):
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}.'
            attn = _official_slide if i < 2 else _official_global
            x = x + attn(_ln(x, sd, p + 'norm1'), sd, p + 'attn.', heads)
            y = F.gelu(_lin(_ln(x, sd, p + 'norm2'), sd, p + 'mlp.fc1'))
            x = x + _lin(y, sd, p + 'mlp.fc2')
        feats.append(x)
        if i < 3:  # PatchMerging: x0 (even, even), x1 (odd row, even col), x2 (even, odd), x3
            x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2],
                           x[:, 1::2, 1::2]], -1)
            x = _lin(_ln(x, sd, f'layers.{i}.downsample.norm'), sd,
                     f'layers.{i}.downsample.reduction')
    return feats


def _converted_model(sd, **kwargs):
    model = SlideSwin(TINY, attn_mode='global', pretrain_img_size=IMG, **kwargs).double()
    model.load_state_dict(convert_checkpoint('slide_swin', {'model': sd}), strict=True)
    return model.eval()


def test_converter_round_trip_equals_official_forward():
    sd = official_state_dict()
    converted = convert_checkpoint('slide_swin', {'model': sd, 'epoch': 3})
    arch = _arch_of(converted)
    assert arch['attn_mode'] == 'global' and arch['pretrain_img_size'] == IMG
    assert not arch['deploy'] and arch['num_slide_stages'] == 2
    # tensors arrive untouched (qkv layout, 6-D tables), merging tensors permuted
    assert torch.equal(converted['stages.1.blocks.0.attn.qkv.weight'],
                       sd['layers.1.blocks.0.attn.qkv.weight'])
    assert converted['stages.0.blocks.0.attn.relative_position_bias_table'].shape == \
        (1, 1, 1, 9, 1, 1)
    assert torch.equal(converted['stages.2.blocks.1.attn.w_msa.relative_position_bias_table'],
                       sd['layers.2.blocks.1.attn.relative_position_bias_table'])
    assert 'head.weight' not in converted and 'norm.weight' not in converted
    model = _converted_model(sd)
    for i, side in ((2, 4), (3, 2)):  # mmdet's WindowMSA index == Swin's formula
        own = model.state_dict()[f'stages.{i}.blocks.0.attn.w_msa.relative_position_index']
        assert torch.equal(own, swin_index(side))
    x = torch.randn(2, 3, IMG, IMG, dtype=F64)
    with torch.no_grad():
        outs = model(x)
        ref = official_features(sd, x)
    for out, feat in zip(outs, ref):
        expected = F.layer_norm(feat, feat.shape[-1:]).permute(0, 3, 1, 2)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


def test_window_mode_loads_global_checkpoint_with_resized_tables():
    sd = official_state_dict()
    model = SlideSwin(TINY, window_size=7)
    model.load_state_dict(convert_checkpoint('slide_swin', sd), strict=True)
    table = model.stages[2].blocks[0].attn.w_msa.relative_position_bias_table
    assert table.shape == (169, 2)
    converted = convert_checkpoint('slide_swin', sd)
    # same weights elsewhere
    assert torch.equal(model.stages[0].blocks[0].attn.dep_conv1.weight,
                       converted['stages.0.blocks.0.attn.dep_conv1.weight'].float())
    assert model(torch.randn(1, 3, 70, 45))[3].shape == (1, 128, 3, 2)


def test_pretrained_init_cfg_reads_official_file(tmp_path):
    sd = {k: v.float() for k, v in official_state_dict().items()}
    path = tmp_path / 'slide_swin_official.pth'
    torch.save({'model': sd, 'epoch': 300}, path)
    model = SlideSwin(TINY, attn_mode='global', pretrain_img_size=IMG,
                      init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.stages[1].blocks[0].attn.dep_conv.bias,
                       sd['layers.1.blocks.0.attn.dep_conv.bias'])
    assert model.stages[1].blocks[0].attn.shift_kernel_is_one_hot()


def test_converter_rejects_bad_files():
    sd = official_state_dict()
    sd['layers.0.blocks.0.attn.extra'] = torch.zeros(1)
    with pytest.raises(CheckpointKeyError, match='unexpected'):
        convert_checkpoint('slide_swin', sd)
    sd = official_state_dict()
    sd['layers.0.blocks.0.attn.dep_conv.weight'] += 0.1
    with pytest.raises(ValueError, match='one-hot'):
        convert_checkpoint('slide_swin', sd)
    sd = official_state_dict()
    del sd['layers.1.blocks.0.attn.proj.bias']
    with pytest.raises(CheckpointKeyError, match='missing'):
        convert_checkpoint('slide_swin', sd)


def test_switch_to_deploy_and_reload():
    model = _converted_model(official_state_dict())
    x = torch.randn(1, 3, 48, 80, dtype=F64)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    deploy_sd = model.state_dict()
    assert not any('dep_conv1' in k for k in deploy_sd)
    assert _arch_of(convert_checkpoint('slide_swin', deploy_sd))['deploy']
    again = SlideSwin(TINY, attn_mode='global', pretrain_img_size=IMG, deploy=True).double()
    again.load_state_dict(deploy_sd, strict=True)
    torch.testing.assert_close(again.eval()(x)[2], after[2], rtol=0, atol=0)


@pytest.mark.parametrize('size', [(32, 32), (45, 70), (97, 33)])
@pytest.mark.parametrize('mode', ['window', 'global'])
def test_output_shapes_any_size(size, mode):
    model = SlideSwin(TINY, attn_mode=mode, pretrain_img_size=IMG).eval()
    h, w = size
    outs = model(torch.randn(1, 3, h, w))
    for i, out in enumerate(outs):
        s = 2**(i + 2)
        assert out.shape == (1, 16 * 2**i, -(-h // s), -(-w // s)) and out.is_contiguous()


def test_out_indices_frozen_stages_drop_path():
    model = SlideSwin(TINY, out_indices=(1, 3), frozen_stages=2, drop_path_rate=0.3)
    model.train()
    assert [o.shape[1] for o in model(torch.randn(1, 3, 64, 64))] == [32, 128]
    assert not hasattr(model, 'norm0')
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert not model.stages[0].training and model.stages[2].training
    assert model.stages[2].blocks[1].attn.w_msa.qkv.weight.requires_grad
    assert isinstance(model.stages[0].blocks[0].attn.drop_path, torch.nn.Identity)  # rate 0
    assert model.stages[3].blocks[0].ffn.dropout_layer.drop_prob == pytest.approx(0.3)

    # the one-hot shift kernel is frozen, its bias and the learnable kernel train
    torch.manual_seed(0)
    plain = SlideSwin(TINY, out_indices=(0, 2)).eval()
    sum(o.sum() for o in plain(torch.randn(1, 3, 40, 40))).backward()
    assert plain.stages[0].blocks[0].attn.dep_conv1.weight.grad.abs().sum() > 0
    assert plain.stages[0].blocks[0].attn.dep_conv.weight.grad is None  # frozen one-hot kernel
    assert plain.stages[0].blocks[0].attn.dep_conv.bias.grad is not None  # trainable, as released


def test_one_hot_survives_init_weights():
    model = SlideSwin(TINY, init_cfg=dict(type='Kaiming', layer='Conv2d'))
    model.init_weights()
    assert model.patch_embed.projection.bias.abs().sum() == 0  # the Kaiming init_cfg ran
    attns = [m for m in model.modules() if isinstance(m, SlideAttention)]
    assert len(attns) == 2 and all(a.shift_kernel_is_one_hot() for a in attns)
    pvt = SlidePVT('tiny')
    pvt.init_weights()  # mmdet's PVT init normal-inits every Conv2d
    attns = [m for m in pvt.modules() if isinstance(m, SlideAttention)]
    assert len(attns) == 4 and all(a.shift_kernel_is_one_hot() for a in attns)


@pytest.mark.parametrize('arch, params, global_params', [
    ('tiny', 28.349, 28.31), ('small', 49.747, 49.63), ('base', 87.949, 87.79)])
def test_parameter_counts_match_the_release(arch, params, global_params):
    """The counts on the released code include the classifier (norm + head), which the backbone
    drops."""
    def count(mode):
        with torch.device('meta'):
            m = SlideSwin(arch, attn_mode=mode, out_indices=(3, ))
        dim = m.embed_dims[3]
        frozen = sum(a.dep_conv.weight.numel() for a in m.modules()
                     if isinstance(a, SlideAttention))
        assert frozen == 10368
        # + classifier (norm and head), - norm3 (same size as the classifier's norm)
        return (sum(p.numel() for p in m.parameters()) + dim * 1000 + 1000) / 1e6
    assert count('global') == pytest.approx(params, abs=1e-3)
    assert count('window') == pytest.approx(global_params, abs=1e-2)


def test_slide_pvt_replaces_sra_in_stages_1_2():
    from mmdet.models.backbones.pvt import PyramidVisionTransformer, SpatialReductionAttention
    for arch, depths, delta in (('tiny', [2, 2, 2, 2], 1.0), ('small', [3, 4, 6, 3], 1.8)):
        slide, host = SlidePVT(arch), PyramidVisionTransformer(num_layers=depths)
        n = [sum(p.numel() for p in m.parameters()) / 1e6 for m in (host, slide)]
        assert n[0] - n[1] == pytest.approx(delta, abs=0.06)  # paper's PVT -> Slide-PVT deltas
        kinds = [[type(b.attn) for b in layer[1][1:]] for layer in slide.layers]
        assert all(k is not SpatialReductionAttention for k in kinds[0] + kinds[1])
        assert all(k is SpatialReductionAttention for k in kinds[2] + kinds[3])
    model = SlidePVT('tiny', out_indices=(0, 1, 2, 3), frozen_stages=1).eval()
    outs = model(torch.randn(1, 3, 50, 70))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 13, 18), (1, 128, 7, 9), (1, 320, 4, 5),
                                              (1, 512, 2, 3)]
    assert all(o.is_contiguous() for o in outs)
    model.train()
    assert not any(p.requires_grad for p in model.layers[0].parameters())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # the same DropPath draws for both (stage 2 trains, rate > 0)
        torch.manual_seed(0)
        before = model(x)
        model.switch_to_deploy()
        torch.manual_seed(0)
        after = model(x)
    torch.testing.assert_close(before[1], after[1], rtol=0, atol=1e-5)


def _window_msa_reference(msa, x, window_size, shift):
    """Official Swin window attention on an (H, W, C) map, one window at a time: when the map is
    no larger than the window, window = min(H, W) and no shift; otherwise the window, shifted by
    window // 2 on shifted blocks, the map zero padded bottom/right, tokens of different shift
    regions masked with -100 (mmdet's and the official value)."""
    height, width, c = x.shape
    w_msa = msa.w_msa
    if min(height, width) <= window_size:
        window, s = min(height, width), 0
    else:
        window, s = window_size, (window_size // 2 if shift else 0)
    hp, wp = -(-height // window) * window, -(-width // window) * window
    padded = x.new_zeros(hp, wp, c)
    padded[:height, :width] = x
    region = torch.zeros(hp, wp, dtype=torch.long)
    if s:
        for i, rows in enumerate((slice(0, -window), slice(-window, -s), slice(-s, None))):
            for j, cols in enumerate((slice(0, -window), slice(-window, -s), slice(-s, None))):
                region[rows, cols] = 3 * i + j
        padded = torch.roll(padded, (-s, -s), (0, 1))
    table = w_msa.relative_position_bias_table
    heads = w_msa.num_heads
    out = torch.zeros_like(padded)
    for r0 in range(0, hp, window):
        for c0 in range(0, wp, window):
            cells = [(r, q) for r in range(r0, r0 + window) for q in range(c0, c0 + window)]
            tokens = torch.stack([padded[r, q] for r, q in cells])
            qkv = tokens @ w_msa.qkv.weight.t() + w_msa.qkv.bias
            q, k, v = qkv.view(len(cells), 3, heads, -1).unbind(1)
            result = []
            for h in range(heads):
                logits = (q[:, h] * w_msa.scale) @ k[:, h].t()
                for a, (ra, qa) in enumerate(cells):
                    for b, (rb, qb) in enumerate(cells):
                        dy, dx = ra - rb + window_size - 1, qa - qb + window_size - 1
                        logits[a, b] += table[dy * (2 * window_size - 1) + dx, h]
                        if region[ra, qa] != region[rb, qb]:
                            logits[a, b] += -100.
                result.append(torch.softmax(logits, -1) @ v[:, h])
            mixed = torch.cat(result, -1) @ w_msa.proj.weight.t() + w_msa.proj.bias
            for (r, q), value in zip(cells, mixed):
                out[r, q] = value
    if s:
        out = torch.roll(out, (s, s), (0, 1))
    return out[:height, :width]


@pytest.mark.parametrize('hw', [(7, 7), (8, 8), (13, 13), (14, 14), (7, 11), (5, 9), (9, 6),
                                (3, 3), (1, 4)])
@pytest.mark.parametrize('shift', [False, True])
def test_window_attention_follows_official_swin_rule_on_small_maps(hw, shift):
    from mmattn.models.backbones.slide import ClampedSwinBlock
    torch.manual_seed(0)
    block = ClampedSwinBlock(embed_dims=16, num_heads=2, feedforward_channels=32, window_size=7,
                             shift=shift).double().eval()
    with torch.no_grad():
        block.attn.w_msa.relative_position_bias_table.normal_()
        x = torch.randn(2, hw[0] * hw[1], 16, dtype=torch.float64)
        out = block.attn(x, hw)
        for i in range(2):
            ref = _window_msa_reference(block.attn, x[i].view(*hw, 16), 7, shift)
            torch.testing.assert_close(out[i].view(*hw, 16), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('hw', [(8, 8), (14, 14), (15, 22), (23, 9), (29, 31)])
@pytest.mark.parametrize('shift', [False, True])
def test_window_attention_on_larger_maps_is_mmdets_bit_for_bit(hw, shift):
    """Maps larger than the window: the rewritten forward (ceil-division window counts, views
    with explicit sizes, the shift mask built from region ids) computes mmdet's
    ``ShiftWindowMSA.forward`` to the last bit."""
    from mmdet.models.backbones.swin import ShiftWindowMSA

    from mmattn.models.backbones.slide import ClampedSwinBlock
    torch.manual_seed(0)
    attn = ClampedSwinBlock(embed_dims=16, num_heads=2, feedforward_channels=32, window_size=7,
                            shift=shift).eval().attn
    with torch.no_grad():
        attn.w_msa.relative_position_bias_table.normal_()
        x = torch.randn(2, hw[0] * hw[1], 16)
        assert torch.equal(attn(x, hw), ShiftWindowMSA.forward(attn, x, hw))


@pytest.mark.parametrize('hw', [(7, 7), (5, 9), (1, 4), (8, 8), (15, 22), (23, 9)])
@pytest.mark.parametrize('shift', [False, True])
def test_exported_window_attention_has_no_size_branch(hw, shift):
    """The branch-free form ``torch.export`` takes (symbolic window and shift, the roll as a
    gather, the region mask always added) computes the official rule on both sides of it."""
    from mmattn.models.backbones.slide import ClampedSwinBlock
    torch.manual_seed(0)
    attn = ClampedSwinBlock(embed_dims=16, num_heads=2, feedforward_channels=32, window_size=7,
                            shift=shift).double().eval().attn
    with torch.no_grad():
        attn.w_msa.relative_position_bias_table.normal_()
        x = torch.randn(2, hw[0] * hw[1], 16, dtype=torch.float64)
        out = attn._forward_exported(x, hw)
        for i in range(2):
            ref = _window_msa_reference(attn, x[i].view(*hw, 16), 7, shift)
            torch.testing.assert_close(out[i].view(*hw, 16), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.deploy
def test_one_onnx_export_serves_maps_on_both_sides_of_the_window(tmp_path):
    """Exported to ONNX with dynamic H, W at a map smaller than the window (no shift, window =
    map), the graph still computes the shifted 7x7 windows on larger maps in onnxruntime, and
    the other way round: the size rule is in the graph, not frozen at the traced size."""
    from mmattn.deploy.onnx import export_onnx, onnxruntime_session, run_onnxruntime
    from mmattn.models.backbones.slide import ClampedSwinBlock

    class OnMap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = ClampedSwinBlock(embed_dims=16, num_heads=2, feedforward_channels=32,
                                         window_size=7, shift=True).eval().attn

        def forward(self, x):  # (B, C, H, W) -> tokens
            return self.attn(x.flatten(2).transpose(1, 2), x.shape[2:])

    torch.manual_seed(0)
    model = OnMap()
    with torch.no_grad():
        model.attn.w_msa.relative_position_bias_table.normal_()
        for i, (traced, other) in enumerate([((4, 5), (11, 17)), ((11, 17), (5, 4))]):
            path = str(tmp_path / f'attn{i}.onnx')
            export_onnx(model, torch.randn(1, 16, *traced), path)
            session = onnxruntime_session(path)
            for hw in (traced, other):
                x = torch.randn(1, 16, *hw)
                out = torch.from_numpy(run_onnxruntime(session, x)[0])
                torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('window,hw,shift', [(8, (8, 8), False), (8, (19, 13), True),
                                              (8, (5, 6), False), (7, (15, 9), True)])
def test_inference_chunks_queries_of_large_windows(monkeypatch, window, hw, shift):
    """Inference on windows of at least CHUNKED_MIN_TOKENS tokens runs the queries in chunks:
    the same values as mmdet's (unchunked) path, and no (windows, heads, T, T) logits: checked
    with the thresholds lowered so that a few-token window is "large" and chunks are 5 rows."""
    from mmdet.models.backbones.swin import ShiftWindowMSA

    import mmattn.models.backbones.slide as slide
    torch.manual_seed(0)
    attn = slide.ClampedSwinBlock(embed_dims=16, num_heads=2, feedforward_channels=32,
                                  window_size=window, shift=shift).eval().attn
    x = torch.randn(2, hw[0] * hw[1], 16)
    with torch.no_grad():
        attn.w_msa.relative_position_bias_table.normal_()
        expected = ShiftWindowMSA.forward(attn, x, hw) if min(hw) > window else attn(x, hw)
        side = min(window, *hw)
        windows = 2 * math.ceil(hw[0] / side) * math.ceil(hw[1] / side)
        monkeypatch.setattr(slide, 'CHUNKED_MIN_TOKENS', 4)
        monkeypatch.setattr(slide, 'CHUNKED_LOGITS', 5 * windows * 2 * side * side)
        sizes = []

        class RecordingSoftmax(torch.nn.Softmax):
            def forward(self, t):
                sizes.append(t.shape[2])  # query rows of this call
                return super().forward(t)

        monkeypatch.setattr(attn.w_msa, 'softmax', RecordingSoftmax(dim=-1))
        out = attn(x, hw)
    assert max(sizes) == 5 and sum(sizes) == side * side  # every query once, 5 rows at a time
    # chunking changes only the GEMM row counts (bit-equal on the CI machine)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    with torch.enable_grad():  # training keeps mmdet's one-shot path
        sizes.clear()
        attn(x, hw)
        assert sizes == [side * side]  # one softmax over every query


@pytest.mark.parametrize('size', [(32, 32), (33, 47), (97, 131), (35, 36)])
def test_slide_swin_patch_padding_is_mmcvs(size):
    """Patch embedding and merging pad as mmcv's corner AdaptivePadding (kernel == stride)."""
    from mmcv.cnn.bricks.transformer import AdaptivePadding
    model = SlideSwin(arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4]))
    layers = [model.patch_embed] + [s.downsample for s in model.stages if s.downsample]
    x = torch.randn(1, 3, *size)
    for layer in layers:
        padding = layer.adaptive_padding
        assert torch.equal(padding(x), AdaptivePadding.forward(padding, x))


def _official_pvt_v1(state_dict):
    """An mmdet PyramidVisionTransformer state dict in the official PVT v1 layout (whai362/PVT:
    patch_embed{s}, pos_embed{s}, block{s}.{j} with separate q / kv, Linear MLP), the layout
    mmdet's ``pvt_convert`` reads."""
    out = {}
    for key, value in state_dict.items():
        _, stage, part, rest = key.split('.', 3)  # layers.{stage}.{part}.{rest}
        s = int(stage) + 1
        if part == '0':
            out[f'patch_embed{s}.' + rest.replace('projection.', 'proj.')] = value
            continue
        j, name = rest.split('.', 1)
        if j == '0':
            out[f'pos_embed{s}'] = value
            continue
        prefix = f'block{s}.{int(j) - 1}.'
        if name.startswith('attn.attn.in_proj_'):
            q, kv = value.split([value.shape[0] // 3, 2 * value.shape[0] // 3])
            kind = name.rsplit('_', 1)[1]
            out[prefix + f'attn.q.{kind}'], out[prefix + f'attn.kv.{kind}'] = q, kv
        elif name.startswith('attn.attn.out_proj.'):
            out[prefix + name.replace('attn.attn.out_proj.', 'attn.proj.')] = value
        elif name.startswith('ffn.layers.'):
            fc = {'0': 'fc1', '3': 'fc2'}[name.split('.')[2]]
            out[prefix + f'mlp.{fc}.' + name.rsplit('.', 1)[1]] = value.flatten(1) \
                if value.dim() == 4 else value
        else:
            out[prefix + name] = value
    return out


def test_slide_pvt_reads_an_official_pvt_v1_file_with_convert_weights(tmp_path):
    from mmdet.models.backbones.pvt import PyramidVisionTransformer
    torch.manual_seed(0)
    host = PyramidVisionTransformer(num_layers=[2, 2, 2, 2])
    host.init_weights()
    path = tmp_path / 'pvt_tiny.pth'
    torch.save({'model': _official_pvt_v1(host.state_dict())}, path)
    model = SlidePVT('tiny', convert_weights=True,
                     init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    own, theirs = model.state_dict(), host.state_dict()
    slide_stage = r'layers\.[01]\.1\.[0-9]+\.attn\.'  # random init, shift kernels one-hot
    shared = [k for k in own if not re.match(slide_stage, k)]
    assert len(shared) > 100 and all(torch.equal(own[k], theirs[k]) for k in shared)
    assert all(m.shift_kernel_is_one_hot() for m in model.modules()
               if isinstance(m, SlideAttention))
    strict = SlidePVT('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointKeyError):  # without the conversion the names do not fit
        strict.init_weights()


# ---------------------------------------------------------------- argument errors

# (class, overrides of its tiny variant test_arch, what the ValueError must say)
ARGUMENT_ERRORS = [
    (SlideSwin, dict(kernel_size=4), 'kernel_size'),
    (SlideSwin, dict(arch='huge'), 'Unknown SlideSwin arch'),
    (SlideSwin, dict(arch=dict(embed_dims=16)), 'custom SlideSwin arch'),
    (SlideSwin, dict(kernel_size=2), 'kernel_size'),
    (SlideSwin, dict(num_slide_stages=5), 'num_slide_stages'),
    (SlideSwin, dict(attn_mode='local'), 'attn_mode'),
    (SlideSwin, dict(attn_mode='global', pretrain_img_size=100), 'multiple'),
    (SlidePVT, dict(kernel_size=4), 'kernel_size'),
    (SlidePVT, dict(arch='xl'), 'Unknown SlidePVT arch'),
    (SlidePVT, dict(out_indices=(-5, )), 'out_indices'),
]


@pytest.mark.parametrize('cls, overrides, message', ARGUMENT_ERRORS)
def test_argument_errors_name_the_problem(cls, overrides, message):
    with pytest.raises(ValueError, match=message):
        cls(**{**cls.test_arch, **overrides})
