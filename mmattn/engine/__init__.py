from . import mmengine_internals  # noqa: F401  (first: checks the mmengine version)
from .checkpoint import (AtomicCheckpointHook, CheckpointWriteError, find_resume_checkpoint,
                         use_atomic_checkpoints)
from .exception_checkpoint import ExceptionCheckpointHook, save_on_exception
from .hooks import MeanLogVarsHook
from .resume import (ExactResumeHook, ResumableBatchSampler, ResumableEpochBasedTrainLoop,
                     ResumableIterBasedTrainLoop, enable_exact_resume)

__all__ = ['AtomicCheckpointHook', 'CheckpointWriteError', 'ExactResumeHook',
           'ExceptionCheckpointHook', 'MeanLogVarsHook', 'ResumableBatchSampler',
           'ResumableEpochBasedTrainLoop', 'ResumableIterBasedTrainLoop', 'enable_exact_resume',
           'find_resume_checkpoint', 'save_on_exception', 'use_atomic_checkpoints']
