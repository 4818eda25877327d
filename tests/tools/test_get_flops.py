"""get_flops / mmattn.analysis.flops: attention counted, paper params and MACs reproduced."""
import pytest
import torch
import torch.nn.functional as F
from helpers import REPO_ROOT, load_tool

from mmattn.analysis.flops import measure, measure_backbone
from mmattn.analysis.models import build_backbone, family_classes
from mmattn.analysis.ops.neighborhood import neighborhood_attention_2d_unfold
from mmattn.ops import op_specs
from mmattn.ops.routing import (bi_level_routing_attention,
                                 bi_level_routing_attention_reference)
from mmattn.ops.neighborhood import neighborhood_attention_2d


class Call(torch.nn.Module):

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


@pytest.mark.parametrize('device', ['cpu', 'meta'])
@pytest.mark.parametrize('dv', [16, 8])  # 16: the CPU flash kernel; 8: the math path
def test_sdpa_count_is_the_analytic_formula(device, dv):
    q, k, v = torch.randn(2, 3, 50, 16), torch.randn(2, 3, 40, 16), torch.randn(2, 3, 40, dv)
    result = measure(Call(F.scaled_dot_product_attention), (q, k, v), device=device)
    # QK^T: B*h*Lq*Lk*E, AV: B*h*Lq*Lk*Ev multiply-adds
    assert result.macs == 2 * 3 * 50 * 40 * (16 + dv)


@pytest.mark.parametrize('dilation', [1, 3])
def test_na_count_is_the_definition_not_the_tiles(dilation):
    """The fast path's padded tiles are not counted; the unfold anchor's einsums (exactly the
    K*K neighbours, counted op by op) give the same number."""
    q, k, v = (torch.randn(1, 23, 29, 2, 8) for _ in range(3))
    rpb = torch.zeros(2, 13, 13)
    fast = measure(Call(lambda q, k, v, rpb: neighborhood_attention_2d(q, k, v, 7, dilation,
                                                                      rpb)), (q, k, v, rpb))
    anchor = measure(Call(lambda q, k, v, rpb: neighborhood_attention_2d_unfold(
        q, k, v, 7, dilation, rpb)), (q, k, v, rpb), device='cpu')
    assert fast.macs == anchor.macs == 2 * 23 * 29 * 2 * 49 * 8
    assert list(fast.op_macs) == ['mmattn.ops.neighborhood:neighborhood_attention_2d']


@pytest.mark.parametrize('device', ['cpu', 'meta'])
def test_bra_count_is_the_definition_on_every_device(device):
    """The padded map's every query region is counted (the CPU path skips the ones wholly in
    the padding); the reference's matmuls, counted op by op, give the same number."""
    q, k, v = (torch.randn(2, 12, 16, 8) for _ in range(3))
    fast = measure(Call(lambda q, k, v: bi_level_routing_attention(
        q, k, v, 4, 3, 2, out_size=(5, 6))[0]), (q, k, v), device=device)
    anchor = measure(Call(lambda q, k, v: bi_level_routing_attention_reference(
        q, k, v, 4, 3, 2)[0]), (q, k, v), device='cpu')
    assert fast.macs == anchor.macs == 2 * 16 * (16 * 8 + 2 * 12 * 3 * 12 * 8)
    assert list(fast.op_macs) == ['mmattn.ops.routing:bi_level_routing_attention']


def test_handles_are_the_formulas_declared_beside_the_ops():
    from mmattn.analysis.flops import OP_HANDLES
    declared = {target: formula for spec in op_specs().values()
                for target, formula in spec.mac_handles().items()}
    assert set(declared) == {'mmattn.ops.neighborhood:neighborhood_attention_2d',
                             'mmattn.ops.routing:bi_level_routing_attention',
                             'mmattn.ops.slide:slide_attention'}
    assert all(OP_HANDLES[target] is formula for target, formula in declared.items())


# Reference numbers counted on the official code of each family (or recomputed from its layer
# shapes) and the papers' figures, MACs in G:
# (backbone, kwargs, input side, params, MACs, with_head). with_head: the reference counts the
# classification model = trunk + final norm (our norm3, out_indices=(3,)) + 1000-way linear head.
PAPER = [
    # official classification model, torch FlopCounter/2 (n_win 7, no padding, as in ImageNet)
    ('BiFormer:tiny', dict(n_win=7, auto_pad=False), 224, 13.143e6, 2.22e9, True),
    ('BiFormer:small', dict(n_win=7, auto_pad=False), 224, 25.536e6, 4.46e9, True),
    # recomputed from the official layer shapes (convs + linears + QK + AV)
    ('NAT:tiny', {}, 224, 27.90e6, 4.30e9, True),
    ('DiNAT:tiny', {}, 224, 27.90e6, 4.30e9, True),
    # official model, backbone only (no norm4/head), fvcore at 224
    ('GroupMixFormer:tiny', {}, 224, 10.708e6, 3.72e9, False),
    ('GroupMixFormer:small', {}, 224, 22.100e6, 5.16e9, False),
    # the downstream backbone has no classification stages, so its numbers are the official
    # downstream backbone's own count (FlopCounter/2, "all") at 512x512
    ('DualViT:small', {}, 512, 21.741e6, 39.3e9, False),
    # fvcore on the released code with window-7 stages 3-4 and the merged conv (the
    # configuration the paper's 4.6G matches)
    ('SlideSwin:tiny', {}, 224, 28.31e6, 4.567e9, True),
    # paper: Slide-PVT-S 22.7M / 4.0G
    ('SlidePVT:small', {}, 224, 22.7e6, 4.0e9, True),
]


@pytest.mark.parametrize('spec,kwargs,side,params,macs,with_head', PAPER)
def test_paper_params_and_macs(spec, kwargs, side, params, macs, with_head):
    if with_head:
        kwargs = dict(kwargs, out_indices=(3, ))
    model = build_backbone(spec, **kwargs)
    result = measure_backbone(model, side, side)
    head = model.embed_dims[-1] * 1000 if with_head else 0
    assert result.params + (head + 1000 if with_head else 0) == pytest.approx(params, rel=0.02)
    assert result.macs + head == pytest.approx(macs, rel=0.02)


def test_every_family_has_a_paper_check():
    assert {p[0].split(':')[0] for p in PAPER} == set(family_classes())


def test_meta_and_cpu_counts_agree_on_a_backbone():
    model = build_backbone('BiFormer:tiny', n_win=4)
    # 72x40 pads every stage's map; CPU's BRA skips the query regions wholly in the padding,
    # which the count (the definition, as the official model computes it) still includes
    meta, cpu = measure_backbone(model, 72, 40), measure_backbone(model, 72, 40, device='cpu')
    assert meta.macs == cpu.macs > 0 and meta.params == cpu.params
    assert 0 < cpu.gather_bytes < meta.gather_bytes  # gather traffic is the implementation's
    meta, cpu = measure_backbone(model, 128, 128), measure_backbone(model, 128, 128, device='cpu')
    bra = 'mmattn.ops.routing:bi_level_routing_attention'
    assert meta.macs == cpu.macs and meta.op_macs[bra] == cpu.op_macs[bra] > 0
    assert meta.gather_bytes == cpu.gather_bytes > 0  # no padding: the same routed K/V


def test_cli_detail_and_config(capsys):
    tool = load_tool('analysis/get_flops')
    result = tool.main(['--backbone', 'NAT', '--arch', 'mini', '--shape', '64', '96', '--detail'])
    out = capsys.readouterr().out
    assert 'multiply-adds' in out and '| levels.2 |' in out
    rows = [r.split('|') for r in out.splitlines() if r.startswith(('| levels.', '| patch_'))]
    assert len(rows) == 5  # the stem and the four levels carry every MAC
    assert sum(float(r[3]) for r in rows) == pytest.approx(result.macs / 1e9, abs=0.003)
    seg = tool.main([f'{REPO_ROOT}/configs/seg/nat_upernet.py', '--shape', '64'])
    assert seg.macs > result.macs and seg.device == 'meta'


def test_bad_names_raise_with_the_allowed_values():
    with pytest.raises(ValueError, match='tiny'):
        build_backbone('NAT:huge')
    with pytest.raises(ValueError, match='Swin-T'):
        build_backbone('NoSuchNet')
