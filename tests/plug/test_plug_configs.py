"""Every configs/plug/*.py builds with its real host and runs ``extract_feat``.

The configs keep mmdet's / mmseg's ImageNet ``init_cfg`` for users; nothing can be downloaded
here, so the tests drop it (the loading itself is tested in test_attention_swap.py).
"""
import pytest
import torch

from helpers import build_model, config_paths, load_config
from mmattn.plug import HOSTS, PLUG_BLOCKS, AttentionBlock2d, AttentionSwap
from mmattn.registry import MODELS

CONFIGS = config_paths('', 'plug')
SIZES = [(333, 517), (32, 32)]


def _without_downloads(cfg):
    model = cfg.model
    model.pop('pretrained', None)
    backbone = model.backbone.backbone if model.backbone.type == 'AttentionSwap' else model.backbone
    backbone.init_cfg = None
    return model


def test_every_block_as_a_resnet_plugin_and_every_swap_host_has_a_config():
    resnet_plugins, swap_hosts = set(), set()
    for path in CONFIGS:
        backbone = load_config(path).model.backbone
        if backbone.type == 'AttentionSwap':
            host = MODELS.get(backbone.backbone.type)  # e.g. PVTv2: PVT's entry of HOSTS
            swap_hosts.add(next(c.__name__ for c in host.__mro__ if c.__name__ in HOSTS))
        else:
            resnet_plugins.update(plugin.cfg.type for plugin in backbone.plugins)
    assert resnet_plugins == {cls.__name__ for cls in PLUG_BLOCKS}
    assert swap_hosts == set(HOSTS)


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_and_extracts_features(path):
    cfg = load_config(path)
    scope = cfg.default_scope
    model = build_model(_without_downloads(cfg), scope)
    model.init_weights()
    model.eval()
    backbone = model.backbone
    if isinstance(backbone, AttentionSwap):
        assert backbone.swapped and all(not b.residual for _, b in backbone.swapped)
    else:  # ResNet plugins: one zero-initialised block after conv2 of every block of stages 2-4
        blocks = [m for m in backbone.modules() if isinstance(m, AttentionBlock2d)]
        assert len(blocks) == 4 + 6 + 3
        # the zero output projection survived the host's init: the block starts as the identity
        assert all(b.residual and not b.attn.proj.weight.any() for b in blocks)
    for height, width in SIZES:
        torch.manual_seed(0)
        x = torch.randn(1, 3, height, width)
        with torch.no_grad():
            feats = model.extract_feat(x)
        assert all(torch.isfinite(f).all() for f in feats)
        # the backbone's stride-32 map reaches the neck / head
        assert any(f.shape[-2:] == (-(-height // 32), -(-width // 32)) for f in backbone(x))


@pytest.mark.parametrize('scope, resnet', [('mmdet', 'ResNet'), ('mmseg', 'ResNetV1c')])
@pytest.mark.parametrize('op', [cls.__name__ for cls in PLUG_BLOCKS])
def test_every_op_as_a_resnet_plugin_of_mmdet_and_mmseg(scope, resnet, op):
    backbone = build_model(dict(type=resnet, depth=50, plugins=[dict(
        cfg=dict(type=op), stages=(False, True, True, True), position='after_conv2')]), scope)
    backbone.init_weights()
    blocks = [m for m in backbone.modules() if isinstance(m, AttentionBlock2d)]
    assert len(blocks) == 13 and all(type(b).__name__ == op for b in blocks)
    backbone.train()
    outs = backbone(torch.randn(2, 3, 69, 83))
    assert [o.shape[-2:] for o in outs] == [(18, 21), (9, 11), (5, 6), (3, 3)]
    sum(o.mean() for o in outs).backward()
    assert all(b.attn.proj.weight.grad is not None for b in blocks)
