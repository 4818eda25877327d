from . import biformer  # noqa: F401  (registers the converter)
from . import groupmixformer  # noqa: F401  (registers the converter)
from . import nat  # noqa: F401  (registers the 'nat' and 'dinat' converters)
from .common import (CONVERTERS, CheckpointKeyError, convert_checkpoint, extract_state_dict,
                     load_checkpoint_file)

__all__ = [
    'CONVERTERS', 'CheckpointKeyError', 'convert_checkpoint', 'extract_state_dict',
    'load_checkpoint_file'
]
