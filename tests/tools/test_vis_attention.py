"""vis_attention.py: every family's panels render to non-trivial PNGs (random weights)."""
import pytest
import torch
from helpers import load_tool
from PIL import Image

from mmattn.deploy.tiny import TINY_BACKBONES

vis = load_tool('analysis/vis_attention')


def test_panels_are_read_from_the_op_registry():
    # no list in the tool: every registered op's ATTENTION_PANELS, keyed by its module classes,
    # among them the op of every plug-in block
    from mmattn.ops import op_specs
    from mmattn.plug import PLUG_BLOCKS
    expected = {name for spec in op_specs().values() for name in spec.attention_panels()}
    assert set(vis.declared_panels()) == expected
    assert {type(cls(64).attn).__name__ for cls in PLUG_BLOCKS} <= expected


@pytest.mark.parametrize('name', sorted(TINY_BACKBONES))
def test_panels_render(name, tmp_path):
    """Every backbone class at its ``test_arch``: the first attention layer it has draws two
    panels or more (a region, window or token picture and the weights)."""
    torch.manual_seed(0)
    paths = vis.visualize(name, (37, 29), size=(64, 96), layer=0, out_dir=str(tmp_path),
                          **TINY_BACKBONES[name])
    assert len(paths) >= 2 and len(set(paths)) == len(paths), paths
    for path in paths:
        img = Image.open(path).convert('RGB')
        assert img.size[0] > 300 and len(img.getcolors(maxcolors=2**18)) > 200, path


def test_panel_values_follow_the_definition():
    """The NA neighbourhood has K*K cells, BRA routes top-k regions, weights sum to 1."""
    model = vis.build_backbone('DiNAT:mini').eval()
    layers = vis.attention_layers(model, vis.to_tensor(vis.load_image(None, (64, 96))))
    na = [lay for lay in layers.values() if vis.panel_kind(lay.module)]
    nbhd, weights = vis.draw_panels(na[0], (37, 29), (64, 96), layers)
    assert nbhd.heat.sum() == na[0].module.kernel_size**2
    assert weights.heat.sum().item() == pytest.approx(1, abs=1e-5)
    model = vis.build_backbone('BiFormer:tiny', n_win=4).eval()
    layers = vis.attention_layers(model, vis.to_tensor(vis.load_image(None, (64, 96))))
    bra = next(lay for lay in layers.values() if vis.panel_kind(lay.module))
    regions, attn = vis.draw_panels(bra, (37, 29), (64, 96), layers)
    region_cells = (16 // 4) * (24 // 4)
    # top-k routed regions (1) plus the query region (+1, itself possibly routed)
    assert regions.heat.sum() == (bra.module.topk + 1) * region_cells
    assert attn.heat.sum().item() == pytest.approx(1, abs=1e-5)


def test_bad_query_and_layer():
    with pytest.raises(ValueError, match='outside'):
        vis.visualize('NAT:mini', (500, 10), size=(64, 64))
    with pytest.raises(ValueError, match='--layer must be in'):
        vis.visualize('NAT:mini', (5, 10), size=(64, 64), layer=99)


def test_loaded_weights_are_the_ones_drawn(tmp_path):
    torch.manual_seed(0)
    model = vis.build_backbone('NAT:mini')
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'nat_mini.pth')

    def draw(seed, name, **kwargs):
        torch.manual_seed(seed)
        paths = vis.visualize('NAT:mini', (30, 20), size=(64, 64), out_dir=str(tmp_path / name),
                              **kwargs)
        return [open(p, 'rb').read() for p in paths]

    same_init = draw(0, 'seed0')
    assert draw(1, 'loaded', checkpoint=str(tmp_path / 'nat_mini.pth')) == same_init
    assert draw(1, 'seed1')[1] != same_init[1]  # the weights panel depends on the weights
