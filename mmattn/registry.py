"""mmattn's model registry and its bridge into mmdet / mmseg / mmpretrain.

``MODELS`` is a child of mmengine's root registry with scope ``mmattn``, so
``type='mmattn.BiFormer'`` resolves from any OpenMMLab scope. Every public class is also
registered into the downstream ``MODELS`` registries that import, so stock-style configs can
write plain ``type='BiFormer'`` under ``default_scope='mmdet'`` / ``'mmseg'`` / ``'mmpretrain'``.
A name that one of these registries already gives to a different class is refused
(:func:`register_model`), never silently replaced.
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


def _same_class(a, b) -> bool:
    """One class, or the same class of a reloaded module (same module and qualified name)."""
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _check_free(registry, key, module_cls):
    """Refuse to replace a different class registered as ``key`` in ``registry`` (its own
    entries: a class of a parent registry is shadowed, as mmengine's scopes intend)."""
    existing = registry.module_dict.get(key)
    if existing is not None and not _same_class(existing, module_cls):
        raise KeyError(
            f'mmattn cannot register {module_cls.__module__}.{module_cls.__qualname__} as '
            f'{key!r} in {registry.scope}\'s {registry.name} registry: '
            f'{existing.__module__}.{existing.__qualname__} is registered under that name. '
            'Register the mmattn class under another name (register_model(name=...)).')


def register_model(cls=None, *, name=None):
    """Class decorator: register into ``mmattn.registry.MODELS`` and every downstream MODELS.

    If any of them already holds a different class under the same name (an upstream class,
    another plugin's), none is changed: a ``KeyError`` names both classes. Registering the same
    class again (also from a reloaded module) replaces the entry.
    """

    def _register(module_cls):
        key = name or module_cls.__name__
        registries = [MODELS, *_downstream_model_registries()]
        for registry in registries:  # check all before registering anywhere
            _check_free(registry, key, module_cls)
        for registry in registries:
            registry.register_module(name=name, module=module_cls, force=True)
        return module_cls

    return _register if cls is None else _register(cls)
