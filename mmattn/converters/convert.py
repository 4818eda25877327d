"""The converter registry and the steps every family's conversion shares.

A family module declares its converter with :func:`register_converter`: a function from the
official state dict to ``(mmattn state dict, constructor kwargs)``, the name of the backbone
class in ``mmattn.registry.MODELS`` that the kwargs build, and what it drops. The room does the
rest once for every family: reading and unwrapping the checkpoint, logging the dropped tensors,
adding output norms to classification files, and checking every key and shape against a
meta-device model built from the kwargs. No converter imports a model module.
"""
import os
import re
from typing import Callable, NamedTuple

import torch
from mmengine.logging import print_log

from mmattn.registry import MODELS

from .common import check_against_model, extract_state_dict
from .files import load_checkpoint_file


class Converter(NamedTuple):
    """A family's converter: ``convert(state_dict) -> (state_dict, kwargs)``; ``model`` (a class
    name in ``mmattn.registry.MODELS``) built with those kwargs holds exactly the result;
    ``drops`` says what the official files hold that the backbone does not; ``out_norms``: the
    official det/seg backbone adds output norms ``norm{i}`` a classification file lacks."""
    convert: Callable
    model: str
    drops: str
    out_norms: bool = False


CONVERTERS = {}  # family name -> Converter
_OUT_NORM = re.compile(r'^norm\d\.')


def register_converter(*families, model, drops, out_norms=False):
    """Decorator: register a family's ``convert(state_dict) -> (state_dict, kwargs)``.

    Args:
        *families (str): the backbones' ``family`` names it serves (``tools/convert_ckpt.py``'s
            first argument).
        model (str): the backbone class name in ``mmattn.registry.MODELS`` that ``kwargs``
            build; the converted keys and shapes must be exactly its state dict.
        drops (str): what the official files hold that the backbone has not (for the log).
        out_norms (bool): the official det/seg backbone has output norms ``norm{i}`` that a
            classification file lacks: add them as weight 1 / bias 0. Default: False.
    """

    def _register(convert):
        for family in families:
            CONVERTERS[family] = Converter(convert, model, drops, out_norms)
        return convert

    return _register


def _add_output_norms(state_dict, model, family):
    """The model's output norms ``norm{i}`` as weight 1 / bias 0 (as the official det/seg
    backbones initialise them), in place, when the state dict (a classification file) has
    none."""
    if any(_OUT_NORM.match(k) for k in state_dict):
        return
    norms = {k: v for k, v in model.state_dict().items() if _OUT_NORM.match(k)}
    for key, value in norms.items():
        state_dict[key] = (torch.ones if key.endswith('.weight') else torch.zeros)(value.shape)
    if norms:
        print_log(f'{family} converter: classification checkpoint, output norms '
                  f'{", ".join(sorted({k.split(".")[0] for k in norms}))} initialised to weight 1 '
                  '/ bias 0 as the official det/seg backbones do', logger='current')


def convert_state_dict(family, state_dict):
    """An extracted official (or mmattn-layout) state dict -> mmattn state dict for ``family``.

    Raises:
        ValueError: no converter for ``family``.
        CheckpointKeyError: unknown keys, or keys / shapes that do not fit the architecture the
            checkpoint implies (one error listing them all).
    """
    if family not in CONVERTERS:
        raise ValueError(f'no converter for {family!r}; available: {sorted(CONVERTERS)}')
    converter = CONVERTERS[family]
    converted, kwargs = converter.convert(state_dict)
    dropped = len(state_dict) - len(converted)
    if dropped:
        print_log(f'{family} converter: dropped {dropped} tensors ({converter.drops})',
                  logger='current')
    model_cls = MODELS.get(converter.model)
    if model_cls is None:
        raise ValueError(f'{family} converter: {converter.model!r} is not a registered mmattn '
                         'model')
    with torch.device('meta'):
        model = model_cls(**kwargs)
    if converter.out_norms:
        _add_output_norms(converted, model, family)
    check_against_model(converted, model, f'({family})')
    return converted


def convert_checkpoint(family, checkpoint, trusted=False):
    """Official checkpoint (path or loaded dict) -> mmattn state dict for ``family``.

    Args:
        family (str): e.g. ``'biformer'`` (the backbone's ``family``).
        checkpoint (str | dict): a file path or a loaded checkpoint dict (classification
            ``model``, det/seg ``state_dict`` with ``backbone.`` keys, or a plain state dict).
        trusted (bool): load a path with ``weights_only=False`` (a file you trust).

    Returns:
        dict[str, Tensor]: loads with ``strict=True`` into the matching mmattn backbone.
    """
    source = 'the checkpoint'
    if isinstance(checkpoint, (str, os.PathLike)):
        source = os.fspath(checkpoint)
        checkpoint = load_checkpoint_file(source, trusted=trusted)
    return convert_state_dict(family, extract_state_dict(checkpoint, source=source))
