"""Every backbone class against saved golden outputs, computed and compared in float64.

``tests/data/golden_backbone_outputs.pt`` holds, for every backbone class, the constructor
arguments (a tiny arch, all other arguments at their defaults), the parameter names, and the
eval-mode outputs of the float64 model (``model.double()``) for one float64 1x3x97x131 input.

Why float64: float32 results are not reproducible bit for bit across CPU vendors and instruction
sets. oneDNN, MKL and ATen's vectorized kernels sum in another order on AVX2 than on AVX-512 or
without SIMD, and even ``torch.randn`` in float32 draws other numbers with its AVX2 kernel than
with its scalar one. Outputs saved in float32 on one machine failed a float32 check of a few
ulps on others: on a 2-core AMD EPYC with AVX2 (GroupMixFormer 1.7e-5 off at a scale of 5,
SlidePVT 6.6e-6), and on an AVX-512 Xeon as well. In float64 the same reordering moves the
outputs by about 1e-15 of their largest value (measured: below 6e-15 between
``ATEN_CPU_CAPABILITY`` default, avx2 and avx512, and across the refactor below), so the
tolerance, 1e-10 of each output's largest value, does not depend on the machine and is still
far below what any change of what is computed does: rounding only the input to float32 moves
the outputs by 4e-8 to 4e-7 of their largest value. The input and the weights are drawn in
float64, whose ``torch.randn`` draws the same numbers on every CPU.

The weights do not come from the models' random initialisation (a refactor may build modules
in another order and so draw other random numbers): every parameter and BatchNorm statistic is
filled from a generator seeded by its own name (:func:`fill_weights`), so the same names get the
same values whatever the construction order.

Provenance: the outputs were first saved (in float32) at commit edd1e5d, the last commit before
the issue-14 refactor of every backbone. The float64 file was written from the code of
2026-12, after checking on a 2-core Xeon (AVX-512) that the code at edd1e5d and that code give
float64 outputs within 2.3e-15 of each output's largest value for this input.

Commands (``--save`` keeps the saved entries and adds the backbones missing from the file;
``--overwrite`` rewrites every entry, after a deliberate change of the numerics):

    python tests/models/test_golden_outputs.py --save [--overwrite]
    python tests/models/test_golden_outputs.py --report   # distances to the saved outputs

The float32 model is checked too, against the same float64 outputs, with a tolerance sized for
float32 rounding on any machine (1e-4 of the output's largest value; measured errors are below
4e-6 with ``ATEN_CPU_CAPABILITY`` at default, avx2 and avx512): it catches a float32-only fault
(e.g. a cast to half precision), not a small change of the arithmetic.
"""
import argparse
import os.path as osp
import sys
import zlib

import pytest
import torch

from mmattn.models.backbones import __all__ as BACKBONES  # every backbone class

ATOL_OF_SCALE = {torch.float64: 1e-10, torch.float32: 1e-4}

GOLDEN = osp.join(osp.dirname(osp.dirname(__file__)), 'data', 'golden_backbone_outputs.pt')
INPUT_SHAPE = (1, 3, 97, 131)  # odd sizes: exercises every backbone's padding and cropping
INPUT_SEED = 14
FIRST_INPUT_VALUES = (-0.2503566415069595, 0.7388806211916237,
                      -0.6546848288844214, 1.0567299578782883)


def fill_weights(model):
    """Deterministic weights keyed by parameter name (independent of construction order).

    Matrices and kernels get N(0, 1/fan_in); 1-d ``weight`` vectors (norm scales) 1 + N(0, .1^2);
    other 1-d vectors (biases, layer scales, tables) N(0, .1^2); BatchNorm running means
    N(0, .1^2) and running variances 1 + |N(0, .1^2)|. Integer buffers and constant float
    buffers (masks, indices) are left as built. Values are drawn in float64 and cast to each
    tensor's dtype.
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


def golden_input(dtype=torch.float64):
    """The input, drawn in float64 (the same numbers on every CPU), cast to ``dtype``."""
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(INPUT_SEED),
                    dtype=torch.float64)
    return x.to(dtype)


def build(name, kwargs, dtype=torch.float64):
    from mmattn.registry import MODELS
    model = MODELS.build(dict(type=name, **kwargs)).to(dtype)
    fill_weights(model)
    return model.eval()


def compute(name, kwargs, dtype=torch.float64):
    model = build(name, kwargs, dtype)
    with torch.no_grad():
        outs = model(golden_input(dtype))
    return model, [o.contiguous() for o in outs]


def distance(outs, expected):
    """Largest ``|out - ref| / max |ref|`` over the outputs (compared in float64)."""
    return max(((o.double() - r).abs().max() / r.abs().max()).item()
               for o, r in zip(outs, expected))


def save(path, overwrite=False):
    import mmattn
    from mmattn.deploy.tiny import TINY_BACKBONES
    old = torch.load(path, weights_only=True)['backbones'] if osp.exists(path) else {}
    golden = dict(input_shape=list(INPUT_SHAPE), input_seed=INPUT_SEED, dtype='float64',
                  backbones={})
    for name in BACKBONES:
        if name in old and not overwrite:
            golden['backbones'][name] = old[name]
            print(name, 'kept')
            continue
        # a rewritten entry keeps its saved arguments; a new one takes the class's test_arch
        kwargs = old[name]['kwargs'] if name in old else TINY_BACKBONES[name]
        model, outs = compute(name, kwargs)
        golden['backbones'][name] = dict(kwargs=kwargs, params=sorted(model.state_dict()),
                                         outputs=outs)
        print(name, [tuple(o.shape) for o in outs])
    torch.save(golden, path)
    print(f'saved {path} from mmattn at {osp.dirname(mmattn.__file__)}')


@pytest.fixture(scope='module')
def golden():
    return torch.load(GOLDEN, weights_only=True)


def test_golden_file_covers_every_backbone(golden):
    assert sorted(golden['backbones']) == sorted(BACKBONES)
    assert golden['dtype'] == 'float64'
    assert all(o.dtype == torch.float64 for entry in golden['backbones'].values()
               for o in entry['outputs'])
    assert osp.getsize(GOLDEN) < 2.5 * 2**20


def test_input_is_machine_independent():
    # the first values of the float64 draw, written out: a torch or CPU whose randn draws
    # other numbers fails here rather than in every backbone
    x = golden_input()
    assert x.dtype == torch.float64 and tuple(x.shape) == INPUT_SHAPE
    expected = torch.tensor(FIRST_INPUT_VALUES, dtype=torch.float64)
    torch.testing.assert_close(x.flatten()[:4], expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize('name', BACKBONES)
def test_parameter_names_unchanged(golden, name):
    entry = golden['backbones'][name]
    model = build(name, entry['kwargs'])
    assert sorted(model.state_dict()) == entry['params']


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32], ids=['float64', 'float32'])
@pytest.mark.parametrize('name', BACKBONES)
def test_outputs_match_golden(golden, name, dtype):
    entry = golden['backbones'][name]
    outs = compute(name, entry['kwargs'], dtype)[1]
    expected = entry['outputs']
    assert len(outs) == len(expected)
    for i, (out, ref) in enumerate(zip(outs, expected)):
        assert out.dtype == dtype
        atol = ATOL_OF_SCALE[dtype] * ref.abs().max().item()
        torch.testing.assert_close(out.double(), ref, rtol=0, atol=atol,
                                   msg=lambda m, i=i: f'{name} output {i} ({dtype}): {m}')


def report():
    """{backbone: (float64 distance, float32 distance)} to the saved outputs on this machine."""
    golden = torch.load(GOLDEN, weights_only=True)
    return {name: tuple('%.2g' % distance(compute(name, entry['kwargs'], dtype)[1],
                                          entry['outputs'])
                        for dtype in (torch.float64, torch.float32))
            for name, entry in golden['backbones'].items()}


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--save', action='store_true',
                        help=f'write the backbones missing from {GOLDEN}')
    parser.add_argument('--overwrite', action='store_true',
                        help='with --save: recompute every backbone, not only the missing ones')
    parser.add_argument('--report', action='store_true',
                        help='print max |out - saved| / max |saved| per backbone '
                        '(float64 model, float32 model)')
    args = parser.parse_args()
    if args.report:
        print(f'CPU capability {torch.backends.cpu.get_cpu_capability()}; '
              '(float64, float32) distance to the saved outputs:', report())
    elif args.save:
        save(GOLDEN, overwrite=args.overwrite)
    else:
        sys.exit(pytest.main([__file__, '-q', '-s']))
