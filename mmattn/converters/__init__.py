"""Official checkpoints -> mmattn state dicts: one renaming table per family, the shared
conversion steps (``convert.py``), file reading (``files.py``), the loader behind
``init_cfg=dict(type='Pretrained')`` (``load.py``) and the check of a checkpoint against a
whole detector / segmentor (``check.py``). Models import the loader from here; nothing here
imports a model module (the converters name their backbone class in the registry)."""
from . import biformer  # noqa: F401  (registers the 'biformer' converter)
from . import dualvit  # noqa: F401  (registers the 'dualvit' converter)
from . import groupmixformer  # noqa: F401  (registers the 'groupmixformer' converter)
from . import nat  # noqa: F401  (registers the 'nat' and 'dinat' converters)
from . import slide  # noqa: F401  (registers the 'slide_swin' converter)
from .common import CheckpointKeyError, extract_state_dict
from .convert import CONVERTERS, convert_checkpoint, register_converter
from .files import CheckpointFileError, load_checkpoint_file
from .load import load_pretrained

__all__ = [
    'CONVERTERS', 'CheckpointFileError', 'CheckpointKeyError', 'convert_checkpoint',
    'extract_state_dict', 'load_checkpoint_file', 'load_pretrained', 'register_converter'
]
