"""Small helpers for mmattn's tools (no model or OpenMMLab-heavy imports here)."""
from .data_check import (check_data_or_exit, check_pretrained_or_exit, find_missing_data,
                         missing_data_message, missing_pretrained, required_data_paths)

__all__ = ['check_data_or_exit', 'check_pretrained_or_exit', 'find_missing_data',
           'missing_data_message', 'missing_pretrained', 'required_data_paths']
