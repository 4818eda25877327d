"""The few fixes the pinned OpenMMLab stack needs on torch 2.13 / numpy 2.

Imported by ``import mmattn``. Nothing in site-packages is modified.
"""
import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

_HISTORY_BUFFER_METHODS = frozenset({'min', 'max', 'current', 'mean'})


def _history_buffer_getattr(obj, name):
    """Narrow stand-in for ``builtins.getattr`` inside mmengine checkpoints.

    ``HistoryBuffer.__getstate__`` pickles its class-level ``_statistics_methods`` dict, whose
    functions protocol 2 writes as ``getattr(HistoryBuffer, 'mean')``. Allow-listing the real
    ``getattr`` would let a file reach any attribute of any allowed object, so only these four
    lookups are served.
    """
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise RuntimeError(f'mmattn: refusing getattr({obj!r}, {name!r}) while unpickling a checkpoint')


def mmengine_checkpoint_safe_globals():
    """Exactly the globals an mmengine 0.10.7 Runner checkpoint holds beyond torch's defaults."""
    # numpy 2 moved numpy.core to numpy._core; numpy 1.25+ (np.dtypes) is enough here
    multiarray = (np._core if hasattr(np, '_core') else np.core).multiarray
    reconstruct = multiarray._reconstruct
    scalar = multiarray.scalar
    return [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        reconstruct,
        scalar,
        np.ndarray,
        np.dtype,
        # numpy 2 pickles a dtype as dtype(...) + BUILD; BUILD is only allowed on instances of
        # allow-listed classes, and type(np.dtype('f8')) is Float64DType, not np.dtype.
        np.dtypes.Float64DType,
        np.dtypes.Int64DType,
        np.dtypes.Float32DType,
        # checkpoints written under numpy 1.x name the same functions numpy.core.multiarray.*
        (reconstruct, 'numpy.core.multiarray._reconstruct'),
        (scalar, 'numpy.core.multiarray.scalar'),
    ]


def install_checkpoint_allowlist():
    """Let mmengine load its own checkpoints under torch's ``weights_only=True`` default.

    Works around open-mmlab/mmengine#1655: mmengine 0.10.7 calls ``torch.load`` without
    ``weights_only``, and since torch 2.6 that means ``weights_only=True``, which refuses the
    ``HistoryBuffer``/numpy objects in ``message_hub`` (``--resume``, ``load_from``,
    ``tools/test.py CKPT``). The fix upstream (#1670, ``weights_only=False``) is unreleased and
    would turn the protection off; allow-listing keeps it on.
    """
    torch.serialization.add_safe_globals(mmengine_checkpoint_safe_globals())



def keep_optimizer_step_eager():
    """Let mmengine's ``compile`` config option train: run the optimizer step outside the graph.

    mmengine 0.10.7 compiles the whole ``model.train_step``, which ends in
    ``OptimWrapper.step``; on torch 2.13 dynamo fails inside AdamW's step of an mmengine optim
    wrapper (``InternalTorchDynamoError: 'UserDefinedDictVariable' object has no attribute
    'items'`` while reading ``param_groups``). The backward already splits the graph there, so
    running the step eagerly costs nothing and leaves the model's forward and backward compiled;
    outside ``torch.compile`` the wrapper does nothing.
    """
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    for cls in (OptimWrapper, AmpOptimWrapper):
        if 'step' in vars(cls) and not getattr(cls.step, '_mmattn_eager', False):
            cls.step = torch.compiler.disable(cls.step, recursive=True)
            cls.step._mmattn_eager = True


install_checkpoint_allowlist()
keep_optimizer_step_eager()
