"""Every backbone: bad input and arguments get one clear error, NaN propagates (documented),
bf16 autocast on CPU stays close to fp32, and with_cp=True changes neither outputs nor gradients.

The tolerance for bf16 (docs/reliability.md, "Precision"): relative L2 error of every output
map below BF16_RTOL against fp32 on the random-weight ``test_arch`` model; measured 0.3-1.7 %
(BiFormer the highest) on a 2-core Xeon VM (AVX-512), 2026-12-07.
"""
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

import mmattn  # noqa: F401
from mmattn.deploy.tiny import TINY_BACKBONES
from mmattn.registry import MODELS

BF16_RTOL = 0.03

# every backbone class, at its tiny variant (``test_arch``; the stock archs behave the same and
# take seconds more each). Each family's own argument errors are tested in
# tests/models/test_<family>.py.
NAMES = sorted(TINY_BACKBONES)


def build(name, **overrides):
    torch.manual_seed(0)
    return MODELS.build(dict(type=name, **{**TINY_BACKBONES[name], **overrides}))


@pytest.fixture(scope='module')
def models():
    return {name: build(name).eval() for name in NAMES}


@pytest.mark.parametrize('name', NAMES)
def test_bad_arguments_name_the_argument(name):
    with pytest.raises(ValueError, match=r'arch .*nonexistent.*choose one of'):
        build(name, arch='nonexistent')
    with pytest.raises(ValueError, match='out_indices'):
        build(name, out_indices=(0, 4))


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
    """Batch 1 at 32x32 in train mode trains, or (a BatchNorm in the last stage, whose map is
    1x1 there: BiFormer, GroupMixFormer) stops with a message naming the cause and the ways
    out, which work."""
    model = build(name).train()
    x = torch.randn(1, 3, 32, 32)
    last_stage = model.stem_and_stages()[1][-1]
    if any(isinstance(m, _BatchNorm) for m in last_stage.modules()):
        with pytest.raises(ValueError, match=r'one value per channel .*BatchNorm.*norm_eval=True'):
            model(x)
        assert len(model(torch.randn(2, 3, 32, 32))) == 4
        assert len(build(name, norm_eval=True).train()(x)) == 4
    else:
        assert len(model(x)) == 4
