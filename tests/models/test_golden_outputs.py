"""The seven backbones against outputs saved before the issue-14 refactor.

``tests/data/golden_backbone_outputs.pt`` holds, for every backbone class, the constructor
arguments (the tiny arch of ``mmattn.deploy.tiny.TINY_BACKBONES`` at the time of saving, all
other arguments at their defaults), the parameter names, and the eval-mode outputs for one
1x3x97x131 input, all computed at commit edd1e5d (the last commit before the refactor):

    git worktree add /tmp/golden_base edd1e5d
    PYTHONPATH=/tmp/golden_base .venv/bin/python tests/models/test_golden_outputs.py --save
    git worktree remove /tmp/golden_base

The weights do not come from the models' random initialisation (a refactor may build modules
in another order and so draw other random numbers): every parameter and BatchNorm statistic is
filled from a generator seeded by its own name (:func:`fill_weights`), so the same names get the
same values whatever the construction order.

The comparison uses ``torch.testing.assert_close(rtol=1e-5, atol=1e-6 * max |reference|)``, not
``torch.equal``: the reference was saved on one machine, and float32 results are not
reproducible bit for bit across CPU vendors and instruction sets (oneDNN / MKL pick other
kernels and summation orders), nor across a speed change that sums in another order (the
group-mix qkv projection as one GEMM since e671b77: 3 of 4420 GroupMixFormer values moved by
1.5e-6 at a scale of 5). ``python tests/models/test_golden_outputs.py --report`` prints which
backbones are bit-identical on the machine at hand.
"""
import argparse
import os.path as osp
import sys
import zlib

import pytest
import torch

ATOL_OF_SCALE = 1e-6

GOLDEN = osp.join(osp.dirname(osp.dirname(__file__)), 'data', 'golden_backbone_outputs.pt')
INPUT_SHAPE = (1, 3, 97, 131)  # odd sizes: exercises every backbone's padding and cropping
INPUT_SEED = 14
BACKBONES = ('BiFormer', 'NAT', 'DiNAT', 'DualViT', 'GroupMixFormer', 'SlideSwin', 'SlidePVT')


def fill_weights(model):
    """Deterministic weights keyed by parameter name (independent of construction order).

    Matrices and kernels get N(0, 1/fan_in); 1-d ``weight`` vectors (norm scales) 1 + N(0, .1^2);
    other 1-d vectors (biases, layer scales, tables) N(0, .1^2); BatchNorm running means
    N(0, .1^2) and running variances 1 + |N(0, .1^2)|. Integer buffers and constant float
    buffers (masks, indices) are left as built.
    """
    with torch.no_grad():
        tensors = dict(model.named_parameters())
        tensors.update((name, b) for name, b in model.named_buffers()
                       if name.endswith(('running_mean', 'running_var')))
        for name in sorted(tensors):
            tensor = tensors[name]
            gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            noise = torch.randn(tensor.shape, generator=gen, dtype=torch.float64)
            if name.endswith('running_var'):
                value = 1 + 0.1 * noise.abs()
            elif tensor.dim() >= 2:
                value = noise / (tensor[0].numel() ** 0.5)
            elif name.endswith('weight'):
                value = 1 + 0.1 * noise
            else:
                value = 0.1 * noise
            tensor.copy_(value.to(tensor.dtype))


def golden_input():
    return torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(INPUT_SEED))


def build(name, kwargs):
    from mmattn.registry import MODELS
    model = MODELS.build(dict(type=name, **kwargs))
    fill_weights(model)
    return model.eval()


def compute(name, kwargs):
    model = build(name, kwargs)
    with torch.no_grad():
        outs = model(golden_input())
    return model, [o.contiguous() for o in outs]


def save(path):
    import mmattn
    from mmattn.deploy.tiny import TINY_BACKBONES
    golden = dict(input_shape=list(INPUT_SHAPE), input_seed=INPUT_SEED, backbones={})
    for name in BACKBONES:
        kwargs = TINY_BACKBONES[name]
        model, outs = compute(name, kwargs)
        golden['backbones'][name] = dict(kwargs=kwargs, params=sorted(model.state_dict()),
                                         outputs=outs)
        print(name, [tuple(o.shape) for o in outs])
    torch.save(golden, path)
    print(f'saved {path} from mmattn at {osp.dirname(mmattn.__file__)}')


@pytest.fixture(scope='module')
def golden():
    return torch.load(GOLDEN, weights_only=True)


@pytest.fixture(scope='module')
def current(golden):
    return {name: compute(name, entry['kwargs'])[1]
            for name, entry in golden['backbones'].items()}


def test_golden_file_covers_every_backbone(golden):
    assert sorted(golden['backbones']) == sorted(BACKBONES)
    assert osp.getsize(GOLDEN) < 2 * 2**20


@pytest.mark.parametrize('name', BACKBONES)
def test_parameter_names_unchanged(golden, name):
    entry = golden['backbones'][name]
    model = build(name, entry['kwargs'])
    assert sorted(model.state_dict()) == entry['params']


@pytest.mark.parametrize('name', BACKBONES)
def test_outputs_match_golden(golden, current, name):
    expected = golden['backbones'][name]['outputs']
    outs = current[name]
    assert len(outs) == len(expected)
    for i, (out, ref) in enumerate(zip(outs, expected)):
        # a few float32 ulps of the output's largest value: summation-order rounding passes,
        # any change of what is computed (e.g. another window, a missing norm) does not
        atol = ATOL_OF_SCALE * ref.abs().max().item()
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=atol,
                                   msg=lambda m, i=i: f'{name} output {i}: {m}')


def bit_identical_report():
    """{backbone: outputs bit-identical to the saved ones} on this machine."""
    golden = torch.load(GOLDEN, weights_only=True)
    return {name: all(torch.equal(a, b) for a, b in zip(compute(name, entry['kwargs'])[1],
                                                        entry['outputs']))
            for name, entry in golden['backbones'].items()}


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--save', action='store_true', help=f'write {GOLDEN}')
    parser.add_argument('--report', action='store_true',
                        help='print which backbones are bit-identical to the saved outputs')
    args = parser.parse_args()
    if args.report:
        print('bit-identical to the saved outputs:', bit_identical_report())
    elif args.save:
        save(GOLDEN)
    else:
        sys.exit(pytest.main([__file__, '-q', '-s']))
