"""mmattn: efficient-attention vision backbones for mmdet 3.x / mmsegmentation 1.x."""
from . import compat  # noqa: F401  (checkpoint allow-list first: before any Runner loads)
from .version import __version__
from . import registry  # noqa: E402,F401
from . import ops  # noqa: E402,F401
from . import models  # noqa: E402,F401
from . import plug  # noqa: E402,F401
from . import converters  # noqa: E402,F401
from . import engine  # noqa: E402,F401

__all__ = ['__version__']
