"""mmattn's model registry and its bridge into mmdet / mmseg / mmpretrain.

``MODELS`` is a child of mmengine's root registry with scope ``mmattn``, so
``type='mmattn.BiFormer'`` resolves from any OpenMMLab scope. Every public class is also
registered into the downstream ``MODELS`` registries that import, so stock-style configs can
write plain ``type='BiFormer'`` under ``default_scope='mmdet'`` / ``'mmseg'`` / ``'mmpretrain'``.
"""
import importlib
import warnings

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmattn',
    locations=['mmattn.models', 'mmattn.ops', 'mmattn.plug'])

# Downstream registries that get a copy of every mmattn class. mmdet/mmseg/mmpretrain registry
# modules import cheaply (no mmcv.ops, no torchvision); a missing codebase is skipped.
DOWNSTREAM_REGISTRIES = ('mmdet.registry', 'mmseg.registry', 'mmpretrain.registry')


def _downstream_model_registries():
    registries = []
    for module_name in DOWNSTREAM_REGISTRIES:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - a broken optional codebase must not break mmattn
            if not isinstance(exc, ImportError):
                warnings.warn(f'mmattn: cannot import {module_name} ({exc!r}); '
                              'its configs will need the "mmattn." type prefix.')
            continue
        registries.append(module.MODELS)
    return registries


def register_model(cls=None, *, name=None):
    """Class decorator: register into ``mmattn.registry.MODELS`` and every downstream MODELS."""

    def _register(module_cls):
        MODELS.register_module(name=name, module=module_cls)
        for registry in _downstream_model_registries():
            registry.register_module(name=name, module=module_cls, force=True)
        return module_cls

    return _register if cls is None else _register(cls)
