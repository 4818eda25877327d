"""A small variant of every backbone class (seconds to export or compile on a 2-core CPU).

Each backbone class declares its tiny variant as ``test_arch`` (constructor keyword arguments),
beside its ``arch_zoo``; tests and the deploy tools build it from there.
"""
from types import MappingProxyType

from mmattn.registry import MODELS


def _tiny_backbones():
    import mmattn.models.backbones as backbones
    return MappingProxyType({name: getattr(backbones, name).test_arch
                             for name in backbones.__all__})


# Backbone class name -> its ``test_arch`` (read-only; read from the classes)
TINY_BACKBONES = _tiny_backbones()


def build_tiny_backbone(name, **kwargs):
    """The tiny variant (``test_arch``) of backbone class ``name``, in eval mode."""
    return MODELS.build(dict(type=name, **MODELS.get(name).test_arch, **kwargs)).eval()
