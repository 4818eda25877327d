"""The plug-in block contract, the same suite for every block of ``PLUG_BLOCKS``.

NCHW in / out at odd and tiny map sizes (the maps R-50 makes of 333x517 and 32x32 images),
batch 1 and 2, gradients to the input and every parameter, identity at init with ``zero_init``
(also after a host's Kaiming init), bf16 autocast, token mode for transformer hosts, equality
with each op's reference written from the definition (float64), registration for mmcv's
``build_plugin_layer`` in the mmdet and mmseg scopes; the edges: default heads that divide any
width, an empty batch, an input of another dtype.
"""
import pytest
import torch

from mmattn.plug import (PLUG_BLOCKS, BiLevelRoutingAttention2d, DualAttention2d,
                         GroupMixAttention2d, NeighborhoodAttention2d, SlideAttention2d)
from mmattn.plug.blocks import default_heads

CHANNELS = 64
# R-50 stage maps (strides 8, 16, 32) of a 333x517 image and of a 32x32 image, plus odd sizes
MAP_SIZES = [(42, 65), (11, 17), (4, 4), (1, 1), (3, 5)]
BLOCKS = {cls.__name__: cls for cls in PLUG_BLOCKS}
# blocks whose num_heads is free (a divisor of C), and those whose op fixes it
FREE_HEADS = sorted(name for name, cls in BLOCKS.items() if cls.fixed_heads is None)
FIXED_HEADS = sorted(set(BLOCKS) - set(FREE_HEADS))


def _block(name, **kwargs):
    torch.manual_seed(0)
    return BLOCKS[name](CHANNELS, **kwargs)


def _randomise(block):
    """Non-trivial values everywhere (zero-init outputs, one-hot kernels and BN at init hide
    mistakes): every float parameter and BN statistic gets a random perturbation."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in block.named_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        for name, b in block.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith('running_var'):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return block


@pytest.mark.parametrize('name', sorted(BLOCKS))
@pytest.mark.parametrize('batch', [1, 2])
def test_shape_and_gradients_at_odd_and_tiny_sizes(name, batch):
    block = _randomise(_block(name, zero_init=False)).train()
    for h, w in MAP_SIZES:
        x = torch.randn(batch, CHANNELS, h, w, requires_grad=True)
        out = block(x)
        assert out.shape == x.shape and out.dtype == x.dtype
        block.zero_grad()
        out.square().mean().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        no_grad = [n for n, p in block.named_parameters()
                   if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
        assert not no_grad, f'{name} at {h}x{w}: no/non-finite gradient for {no_grad}'


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_residual_option(name):
    block = _randomise(_block(name, zero_init=False)).eval()
    plain = _block(name, residual=False, zero_init=False)
    plain.load_state_dict(block.state_dict())
    plain.eval()
    x = torch.randn(2, CHANNELS, 9, 13)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + plain(x), rtol=0, atol=1e-6)
        assert plain(x).abs().max() > 1e-3  # the op itself is not the identity


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_zero_init_is_the_identity_even_after_a_host_kaiming_init(name):
    from mmengine.model import BaseModule

    class Host(BaseModule):  # the init_cfg mmdet/mmseg ResNets carry
        def __init__(self):
            super().__init__(init_cfg=[dict(type='Kaiming', layer=['Conv2d', 'Linear']),
                                       dict(type='Constant', val=1, layer=['_BatchNorm'])])
            self.block = _block(name)

    host = Host()
    host.init_weights()
    host.train()
    x = torch.randn(2, CHANNELS, 15, 22)
    assert torch.equal(host.block(x), x)
    if hasattr(host.block.attn, 'shift_kernel_is_one_hot'):  # a fixed kernel survives too
        assert host.block.attn.shift_kernel_is_one_hot()
    without = _block(name, zero_init=False)
    without.init_weights()
    assert not torch.equal(without(x), x)


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_bf16_autocast_close_to_fp32(name):
    block = _randomise(_block(name, zero_init=False)).eval()
    x = torch.randn(1, CHANNELS, 21, 33)
    with torch.no_grad():
        ref = block(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = block(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 3e-2, f'{name}: bf16 relative L2 error {rel:.3g}'


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_token_mode_equals_nchw_mode(name):
    """What AttentionSwap hosts call: attn(tokens, hw_shape[, identity])."""
    block = _randomise(_block(name, residual=False, zero_init=False)).eval()
    x = torch.randn(2, CHANNELS, 7, 10)
    tokens = x.flatten(2).transpose(1, 2)
    identity = torch.randn_like(tokens)
    with torch.no_grad():
        nchw = block(x).flatten(2).transpose(1, 2)
        torch.testing.assert_close(block(tokens, (7, 10)), nchw, rtol=0, atol=1e-6)
        torch.testing.assert_close(block(tokens, (7, 10), identity=identity), identity + nchw,
                                   rtol=0, atol=1e-6)


# ---------------------------------------------------------------- equality with the references


@pytest.mark.parametrize('name', sorted(BLOCKS))
@pytest.mark.parametrize('hw', [(13, 18), (5, 3), (1, 1)])
def test_block_equals_the_op_reference_float64(name, hw):
    block = _randomise(_block(name, residual=False, zero_init=False)).double().eval()
    x = torch.randn(2, CHANNELS, *hw, dtype=torch.float64)
    with torch.no_grad():
        out = block(x)
        ref = block.attend_reference(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_dual_block_partial_semantic_blocks_are_pixel_means():
    """ceil mode: a 9x16 map makes 2x3 semantic tokens; the partial ones average their pixels."""
    block = _block('DualAttention2d').double()
    x = torch.randn(1, 9 * 16, CHANNELS, dtype=torch.float64)
    pooled = block.semantic_init.pool(x.transpose(1, 2).reshape(1, CHANNELS, 9, 16))
    assert pooled.shape[-2:] == (2, 3)
    grid = x.reshape(1, 9, 16, CHANNELS)
    torch.testing.assert_close(pooled[0, :, 1, 2], grid[0, 7:, 14:].mean((0, 1)))


# ---------------------------------------------------------------- options, errors, registry


def test_default_heads_and_paper_settings():
    assert BiLevelRoutingAttention2d(256).attn.num_heads == 8  # head width 32
    bra = BiLevelRoutingAttention2d(64)
    assert (bra.attn.n_win, bra.attn.topk) == (7, 4)
    na = NeighborhoodAttention2d(96, num_heads=3, kernel_size=5, dilation=2)
    assert (na.attn.num_heads, na.attn.kernel_size, na.attn.dilation) == (3, 5, 2)
    assert SlideAttention2d(64).attn.kernel_size == 3
    gma = GroupMixAttention2d(128)
    assert gma.attn.embed_dims == 130 and gma.attn.qkv.in_features == 128
    assert GroupMixAttention2d(120).attn.embed_dims == 120
    assert DualAttention2d(64).attn.num_heads == 2


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_wrong_input_is_one_clear_error(name):
    block = _block(name)
    with pytest.raises(ValueError, match='built for 64 channels'):
        block(torch.randn(1, 32, 8, 8))
    with pytest.raises(ValueError, match='NCHW'):
        block(torch.randn(64, 8, 8))
    with pytest.raises(ValueError, match='in_channels'):
        BLOCKS[name](0)


@pytest.mark.parametrize('name', FREE_HEADS)
@pytest.mark.parametrize('channels, heads', [(100, 2), (200, 5), (240, 6), (96, 3), (33, 1)])
def test_default_heads_divide_any_width(name, channels, heads):
    """C // 32 heads when that divides C, else the largest divisor below it: 100 channels
    (C // 32 = 3) used to fail with "embed_dims (100) must be divisible by num_heads (3)"."""
    block = BLOCKS[name](channels, zero_init=False).eval()
    assert block.attn.num_heads == heads
    x = torch.randn(1, channels, 9, 11)
    with torch.no_grad():
        assert block(x).shape == x.shape


def test_default_heads_rule():
    for channels in range(1, 1025):
        heads = default_heads(channels)
        assert channels % heads == 0 and 1 <= heads <= max(1, channels // 32)
        assert not any(channels % h == 0 for h in range(heads + 1, channels // 32 + 1))
    assert [default_heads(c) for c in (64, 128, 256, 320, 512)] == [2, 4, 8, 10, 16]


@pytest.mark.parametrize('name', FREE_HEADS)
@pytest.mark.parametrize('heads', [3, 0, 2.0])
def test_num_heads_that_do_not_divide_are_one_clear_error(name, heads):
    with pytest.raises(ValueError, match=rf'{name}: num_heads must divide in_channels=100 '
                       r'\(one of \[1, 2, 4, 5, 10, 20, 25, 50, 100\]\).*None picks 2'):
        BLOCKS[name](100, num_heads=heads)


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_empty_batch(name):
    block = _randomise(_block(name, zero_init=False)).eval()
    with torch.no_grad():
        assert block(torch.randn(0, CHANNELS, 9, 11)).shape == (0, CHANNELS, 9, 11)
        assert block(torch.randn(0, 9 * 11, CHANNELS), (9, 11)).shape == (0, 9 * 11, CHANNELS)


@pytest.mark.parametrize('name', sorted(BLOCKS))
@pytest.mark.parametrize('dtype', [torch.float64, torch.float16, torch.bfloat16])
def test_input_of_another_dtype_is_one_clear_error(name, dtype):
    block = _block(name)
    msg = f'{name} has torch.float32 weights, got a {dtype} input: cast the input'
    with pytest.raises(TypeError, match=msg):
        block(torch.randn(1, CHANNELS, 8, 8, dtype=dtype))
    with pytest.raises(TypeError, match=msg):
        block(torch.randn(1, 64, CHANNELS, dtype=dtype), (8, 8))


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_bf16_activations_into_fp32_weights_under_autocast(name):
    """A host under mixed precision hands the block bf16 activations: no dtype error."""
    block = _randomise(_block(name, zero_init=False)).eval()
    x = torch.randn(1, CHANNELS, 9, 11, dtype=torch.bfloat16)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = block(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize('name', FIXED_HEADS)
def test_fixed_heads_are_fixed(name):
    fixed = BLOCKS[name].fixed_heads
    BLOCKS[name](CHANNELS, num_heads=fixed)
    with pytest.raises(ValueError, match=f'{fixed} heads'):
        BLOCKS[name](CHANNELS, num_heads=fixed // 2)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_build_plugin_layer_in_downstream_scopes(scope, name):
    from mmcv.cnn import build_plugin_layer
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        layer_name, layer = build_plugin_layer(dict(type=name), in_channels=CHANNELS,
                                               postfix='_after_conv2')
    assert type(layer) is BLOCKS[name]
    assert layer_name == BLOCKS[name]._abbr_ + '_after_conv2'


def test_registered_in_every_downstream_registry():
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as PRETRAIN
    from mmseg.registry import MODELS as SEG

    from mmattn.registry import MODELS
    for name, cls in BLOCKS.items():
        for registry in (MODELS, DET, SEG):
            assert registry.get(name) is cls
        # get() would import mmpretrain.models, which needs torchvision (no CPU build here)
        assert PRETRAIN._module_dict[name] is cls
