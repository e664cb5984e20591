"""Prepare: check cases and convert them to a slice cache with a manifest (``python -m training.prepare``)."""

from .cache import CaseError, prepare_case
from .run import check_cases, prepare

__all__ = ["CaseError", "check_cases", "prepare", "prepare_case"]
