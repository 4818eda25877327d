"""A small variant of every backbone class (seconds to export or compile on a 2-core CPU)."""
from mmattn.registry import MODELS

# Constructor arguments per backbone class. Tests and the deploy tools read them from here.
TINY_BACKBONES = {
    'BiFormer': dict(arch=dict(embed_dims=[16, 32, 32, 64], depths=[1, 1, 1, 1], head_dim=16,
                               mlp_ratio=2), n_win=4),
    'NAT': dict(arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8],
                          mlp_ratio=2.), kernel_size=3),
    'DiNAT': dict(arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8],
                            mlp_ratio=2.), kernel_size=3, dilations=[[2], [2], [1], [1]]),
    'DualViT': dict(arch=dict(stem_hidden=8, embed_dims=[16, 32, 48, 64], num_heads=[2, 2, 3, 4],
                              depths=[1, 1, 1, 1], mlp_ratios=[4, 4, 4, 3])),
    'GroupMixFormer': dict(arch=dict(embed_dims=[10, 20, 30, 40], depths=[1, 1, 1, 1],
                                     mlp_ratios=[2, 2, 4, 4])),
    'SlideSwin': dict(arch=dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4])),
    'SlidePVT': dict(arch='tiny'),  # PVT v1 widths are fixed (64..512); the shallowest depths
}


def build_tiny_backbone(name, **kwargs):
    """The tiny variant of backbone class ``name``, in eval mode."""
    return MODELS.build(dict(type=name, **TINY_BACKBONES[name], **kwargs)).eval()
