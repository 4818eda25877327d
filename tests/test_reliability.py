"""Every backbone: bad input and arguments get one clear error, NaN propagates (documented),
bf16 autocast on CPU stays close to fp32, and with_cp=True changes neither outputs nor gradients.

The tolerance for bf16 (README "Reliability"): relative L2 error of every output map below
BF16_RTOL against fp32 on a random-weight tiny model; measured 0.4-0.9 % for every family.
"""
import pytest
import torch

import mmattn  # noqa: F401
from mmattn.models import (DiNAT, DualViT, GroupMixFormer, NAT, BiFormer, SlidePVT,
                           SlideSwin)

BF16_RTOL = 0.03

# tiny variants (the stock archs behave the same and take seconds more each)
NAT_TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], mlp_ratio=2.)
BACKBONES = {
    'BiFormer': (BiFormer, dict(arch=dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                                          head_dim=8, mlp_ratio=2), n_win=4, topks=(1, 2, 4, -2))),
    'NAT': (NAT, dict(arch=NAT_TINY)),
    'DiNAT': (DiNAT, dict(arch=NAT_TINY, dilations=[[1], [2], [1], [1]])),
    'DualViT': (DualViT, dict(arch=dict(stem_hidden=8, embed_dims=[16, 32, 48, 64],
                                        num_heads=[2, 2, 3, 4], depths=[1, 1, 1, 1],
                                        mlp_ratios=[4, 4, 4, 3]))),
    'GroupMixFormer': (GroupMixFormer, dict(arch=dict(embed_dims=[20, 40, 60, 80],
                                                      depths=[1, 1, 1, 1],
                                                      mlp_ratios=[2, 2, 2, 2]))),
    'SlideSwin': (SlideSwin, dict(arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                                            num_heads=[1, 2, 2, 4]), drop_path_rate=0.)),
    'SlidePVT': (SlidePVT, dict(arch='tiny', drop_path_rate=0.)),
}
# an argument each family cannot work with -> (kwargs, the argument named in the error)
IMPOSSIBLE = {
    'BiFormer': (dict(topks=(1, 2, 100, -2)), 'topk'),
    'NAT': (dict(kernel_size=4), 'kernel_size'),
    'DiNAT': (dict(dilations=[[0], [1], [1], [1]]), 'dilations'),
    'DualViT': (dict(arch=dict(BACKBONES['DualViT'][1]['arch'], num_heads=[3, 2, 3, 4])),
                'num_heads'),
    'GroupMixFormer': (dict(arch=dict(BACKBONES['GroupMixFormer'][1]['arch'],
                                      embed_dims=[12, 40, 60, 80])), 'embed_dims'),
    'SlideSwin': (dict(kernel_size=4), 'kernel_size'),
    'SlidePVT': (dict(kernel_size=4), 'kernel_size'),
}
NAMES = sorted(BACKBONES)
# every other argument error each family names, as (backbone, overrides of BACKBONES, message)
BAD_ARGUMENTS = [
    ('BiFormer', dict(arch='huge'), 'Unknown BiFormer arch'),
    ('BiFormer', dict(arch=dict(embed_dims=[8, 16, 32, 64])), 'must be a dict with keys'),
    ('BiFormer', dict(topks=(1, 4, 17, -2)), 'topk=17'),
    ('BiFormer', dict(n_win=(4, 4)), 'n_win needs one value per stage'),
    ('NAT', dict(arch='huge'), "Unknown NAT arch 'huge'"),
    ('NAT', dict(arch='large'), "Unknown NAT arch 'large'"),  # a DiNAT-only arch
    ('NAT', dict(arch=dict(embed_dims=16, depths=[1, 1, 1, 1])), 'must be a dict with keys'),
    ('NAT', dict(arch=dict(NAT_TINY, window_size=7)), 'must be a dict with keys'),
    ('NAT', dict(arch=dict(NAT_TINY, depths=[1, 1, 1])), r"arch\['depths'\] needs 4"),
    ('NAT', dict(arch=dict(NAT_TINY, num_heads=[1, 3, 4, 8])),
     'width 32 is not divisible by num_heads=3'),
    ('NAT', dict(kernel_size=4), 'odd integer'),
    ('DiNAT', dict(dilations='cityscapes'), "unknown dilation schedule 'cityscapes'"),
    ('DiNAT', dict(dilations='coco'),
     r"'coco' does not fit depths \[1, 1, 1, 1\]: level 0 has 1 blocks but the schedule gives 3"),
    ('DiNAT', dict(arch=dict(NAT_TINY, depths=[3, 4, 4, 5]), dilations='ade20k'),
     'level 2 has 4 blocks'),
    ('DiNAT', dict(dilations=[[1], [1, 2], [1], [1]]),
     r'dilations\[1\] has 2 values but level 1 has 1'),
    ('DiNAT', dict(dilations=[[1], [1], [1]]), 'one list of per-block dilations per level'),
    ('DiNAT', dict(dilations=[[1], [0], [1], [1]]), 'integers >= 1'),
    ('DualViT', dict(arch='xl'), "Unknown DualViT arch 'xl'"),
    ('DualViT', dict(arch={k: v for k, v in BACKBONES['DualViT'][1]['arch'].items()
                           if k != 'stem_hidden'}), 'exactly the keys'),
    ('DualViT', dict(frozen_stages=5), 'frozen_stages'),
    ('GroupMixFormer', dict(arch='huge'), "Unknown GroupMixFormer arch 'huge'.*'small'"),
    ('GroupMixFormer', dict(arch=dict(embed_dims=[10] * 4, depths=[1] * 4)),
     'must be a dict with keys'),
    ('GroupMixFormer', dict(arch=dict(BACKBONES['GroupMixFormer'][1]['arch'], depths=[1, 1, 1])),
     r"arch\['depths'\] needs 4 values"),
    ('GroupMixFormer', dict(arch=dict(BACKBONES['GroupMixFormer'][1]['arch'],
                                      embed_dims=[20, 25, 60, 80])),
     r"arch\['embed_dims'\]\[1\].*divisible by 10.*25"),
    ('GroupMixFormer', dict(arch=dict(BACKBONES['GroupMixFormer'][1]['arch'],
                                      depths=[1, 0, 1, 1])),
     r"arch\['depths'\] must be integers >= 1"),
    ('SlideSwin', dict(arch='huge'), 'Unknown SlideSwin arch'),
    ('SlideSwin', dict(arch=dict(embed_dims=16)), 'custom SlideSwin arch'),
    ('SlideSwin', dict(kernel_size=2), 'kernel_size'),
    ('SlideSwin', dict(num_slide_stages=5), 'num_slide_stages'),
    ('SlideSwin', dict(attn_mode='local'), 'attn_mode'),
    ('SlideSwin', dict(attn_mode='global', pretrain_img_size=100), 'multiple'),
    ('SlidePVT', dict(arch='xl'), 'Unknown SlidePVT arch'),
    ('SlidePVT', dict(out_indices=(-5, )), 'out_indices'),
]

def build(name, **overrides):
    cls, kwargs = BACKBONES[name]
    torch.manual_seed(0)
    return cls(**{**kwargs, **overrides})


@pytest.fixture(scope='module')
def models():
    return {name: build(name).eval() for name in NAMES}


def test_every_registered_backbone_is_covered():
    from mmattn.models import backbones
    assert set(backbones.__all__) == set(BACKBONES)


@pytest.mark.parametrize('name', NAMES)
def test_bad_arguments_name_the_argument(name):
    with pytest.raises(ValueError, match=r'arch .*nonexistent.*choose one of'):
        build(name, arch='nonexistent')
    with pytest.raises(ValueError, match='out_indices'):
        build(name, out_indices=(0, 4))
    kwargs, argument = IMPOSSIBLE[name]
    with pytest.raises(ValueError, match=argument):
        build(name, **kwargs)


@pytest.mark.parametrize('name, overrides, message', BAD_ARGUMENTS,
                         ids=[f'{case[0]}-{i}' for i, case in enumerate(BAD_ARGUMENTS)])
def test_each_family_argument_error_names_the_problem(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        build(name, **overrides)


@pytest.mark.parametrize('name', NAMES)
def test_bad_input_names_the_problem(name, models):
    model = models[name]
    with pytest.raises(TypeError, match='tensor'):
        model([[0.0]])
    with pytest.raises(TypeError, match='floating-point'):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        model(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        model(torch.zeros(1, 4, 64, 64))
    too_small = getattr(model, 'min_input_size', 32) - 1
    with pytest.raises(ValueError, match=r'H, W >= \d+'):
        model(torch.zeros(1, 3, too_small, 64))
    assert len(model(torch.zeros(1, 3, too_small + 1, 64))) == 4  # the minimum itself runs


@pytest.mark.parametrize('name', NAMES)
def test_nan_propagates_instead_of_raising(name, models):
    """Documented: inputs are not scanned for NaN/Inf (a device sync per forward); a NaN pixel
    reaches the outputs, it is not silently replaced."""
    x = torch.randn(1, 3, 64, 64)
    x[0, 0, 20, 20] = float('nan')
    with torch.no_grad():
        outs = models[name](x)
    assert all(torch.isnan(out).any() for out in outs)
    with torch.no_grad():
        assert all(torch.isfinite(out).all() for out in models[name](torch.randn(1, 3, 64, 64)))


@pytest.mark.parametrize('name', NAMES)
def test_bf16_autocast_on_cpu_is_close_to_fp32(name, models):
    model = models[name]
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
    for out, ref in zip(low, reference):
        assert out.shape == ref.shape and torch.isfinite(out).all()
        error = (out.float() - ref).norm() / ref.norm()
        assert error < BF16_RTOL, f'{name}: relative error {error:.4f}'


@pytest.mark.parametrize('size, out_indices', [((64, 64), (0, 1, 2, 3)), ((48, 40), (0, 2))])
@pytest.mark.parametrize('name', NAMES)
def test_with_cp_same_outputs_and_gradients(name, size, out_indices, monkeypatch):
    """Train mode; also at a size that needs padding inside and with out_indices that end the
    stage loop early."""
    import torch.utils.checkpoint as cp
    calls = []
    checkpoint = cp.checkpoint
    monkeypatch.setattr(cp, 'checkpoint', lambda *a, **k: calls.append(1) or checkpoint(*a, **k))
    plain = build(name, out_indices=out_indices)
    checkpointed = build(name, out_indices=out_indices, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    results = []
    for model in (plain, checkpointed):
        model.train()
        inp = x.clone().requires_grad_()
        calls.clear()
        outs = model(inp)
        assert len(outs) == len(out_indices)
        assert bool(calls) == (model is checkpointed)  # with_cp really checkpoints
        weighted = (out * torch.linspace(-1, 1, out.numel()).view_as(out) for out in outs)
        sum(w.sum() for w in weighted).backward()
        results.append((outs, inp.grad, {k: p.grad for k, p in model.named_parameters()}))
    (outs_a, gin_a, grads_a), (outs_b, gin_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(gin_a, gin_b)
    assert grads_a.keys() == grads_b.keys()
    assert any(g is not None for g in grads_a.values())
    for key in grads_a:
        if grads_a[key] is None:
            assert grads_b[key] is None, key
        else:
            torch.testing.assert_close(grads_a[key], grads_b[key], msg=key)


@pytest.mark.parametrize('name', NAMES)
def test_input_dtype_other_than_the_weights_is_one_clear_error(name, models):
    """float64 / float16 into a float32 model on CPU: a TypeError saying what to do, not an
    error from deep inside a convolution; float64 works once the model is float64."""
    model = models[name]
    for dtype in (torch.float64, torch.float16):
        with pytest.raises(TypeError, match=rf'input dtype {dtype} differs from the weights'):
            model(torch.zeros(1, 3, 64, 64, dtype=dtype))
    double = build(name).eval().double()
    with torch.no_grad():
        outs = double(torch.randn(1, 3, 64, 64, dtype=torch.float64))
    assert all(out.dtype == torch.float64 and torch.isfinite(out).all() for out in outs)


@pytest.mark.parametrize('name', NAMES)
def test_train_mode_batch_one_at_32x32(name):
    """Batch 1 at 32x32 in train mode trains, or (BatchNorm in the last stage: BiFormer,
    GroupMixFormer) stops with a message naming the cause and the ways out, which work."""
    model = build(name).train()
    x = torch.randn(1, 3, 32, 32)
    if name in ('BiFormer', 'GroupMixFormer'):
        with pytest.raises(ValueError, match=r'one value per channel .*BatchNorm.*norm_eval=True'):
            model(x)
        assert len(model(torch.randn(2, 3, 32, 32))) == 4
        assert len(build(name, norm_eval=True).train()(x)) == 4
    else:
        assert len(model(x)) == 4
