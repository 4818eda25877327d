"""The op registry: an op declared from outside the package (here, this test file) is found by
the registry and by the tools that iterate it, with no list to edit."""
import pytest
import torch
from helpers import load_tool

from mmattn.ops import op_specs, register_op, registry
from mmattn.ops.common import AttentionPanel

TOY = 'toy_registry_test'


def toy_attention(q, k, v, scale=None):
    """Plain softmax attention on (B, T, C) tokens."""
    scale = q.shape[-1]**-0.5 if scale is None else scale
    return torch.softmax(q @ k.transpose(1, 2) * scale, -1) @ v


def toy_attention_reference(q, k, v, scale=None, return_weights=False):
    scale = q.shape[-1]**-0.5 if scale is None else scale
    weights = torch.exp(q @ k.transpose(1, 2) * scale)
    weights = weights / weights.sum(-1, keepdim=True)
    return (weights @ v, weights) if return_weights else weights @ v


def toy_attention_macs(out, q, k, v, *args, **kwargs):
    return 2 * q.shape[0] * q.shape[1] * k.shape[1] * q.shape[2]


def _panels(module, args, locate, captures):
    return [AttentionPanel('none', 'nothing', torch.zeros(2, 2))]


ATTENTION_PANELS = {'ToyAttention': _panels}


def bench_cases(device='cpu', quick=False):
    def build():
        return toy_attention, [torch.randn(1, 4, 8, device=device) for _ in range(3)]

    return [dict(op='toy', impl='mmattn', size='1x4x8', build=build)]


@pytest.fixture
def toy():
    spec = register_op(TOY, references={toy_attention: toy_attention_reference},
                       macs={toy_attention: toy_attention_macs}, tools=__name__)
    yield spec
    del registry._OPS[TOY]


def test_an_op_registered_outside_the_package_is_found(toy):
    assert op_specs()[TOY] is toy
    assert toy.module == __name__ and toy.references == {'toy_attention': toy_attention_reference}
    assert toy.op_module().toy_attention is toy_attention
    assert toy.mac_handles() == {f'{__name__}:toy_attention': toy_attention_macs}
    assert load_tool('analysis/benchmark').op_families()[-1] == TOY
    assert 'ToyAttention' in load_tool('analysis/vis_attention').declared_panels()
    from mmattn.analysis import measure

    class Toy(torch.nn.Module):
        def forward(self, q):
            return toy_attention(q, q, q)  # the module global, which the counter rebinds

    counted = measure(Toy(), (torch.randn(1, 4, 8), ), device='cpu')
    assert counted.op_macs == {f'{__name__}:toy_attention': 2 * 4 * 4 * 8}


def test_registering_a_name_of_another_module_fails(toy):
    with pytest.raises(KeyError, match='registered already'):
        register_op('routing', references={toy_attention: toy_attention_reference})
    with pytest.raises(ValueError, match='one module'):
        register_op('toy_mixed', references={toy_attention: toy_attention_reference},
                    module='mmattn.ops.routing')
