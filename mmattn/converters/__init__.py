from . import biformer  # noqa: F401  (registers the converter)
from . import dualvit  # noqa: F401  (registers the 'dualvit' converter)
from . import groupmixformer  # noqa: F401  (registers the converter)
from . import nat  # noqa: F401  (registers the 'nat' and 'dinat' converters)
from . import slide  # noqa: F401  (registers the 'slide_swin' converter)
from .common import (CONVERTERS, CheckpointKeyError, convert_checkpoint, extract_state_dict,
                     load_checkpoint_file)

__all__ = [
    'CONVERTERS', 'CheckpointKeyError', 'convert_checkpoint', 'extract_state_dict',
    'load_checkpoint_file'
]
