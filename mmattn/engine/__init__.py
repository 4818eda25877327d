from .hooks import MeanLogVarsHook

__all__ = ['MeanLogVarsHook']
