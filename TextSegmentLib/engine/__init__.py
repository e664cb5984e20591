"""The whole-volume engine: text prompts -> 3D labelmap, with cached slice embeddings and slice refinement.

Example:
    >>> from TextSegmentLib.engine import Segmenter, Result, SegmentReport, VolumeInput, Cancelled, InputError
    >>> Segmenter.segment.__name__
    'segment'
"""

from .batching import Cancelled
from .io import InputError, VolumeInput, check_prompts, load_input
from .options import DEFAULT_OPTIONS
from .result import Result, SegmentReport
from .segmenter import Segmenter, load_model
from .volume import SLICE_AXES, PreparedVolume

__all__ = [
    "DEFAULT_OPTIONS",
    "SLICE_AXES",
    "Cancelled",
    "InputError",
    "PreparedVolume",
    "Result",
    "SegmentReport",
    "Segmenter",
    "VolumeInput",
    "check_prompts",
    "load_input",
    "load_model",
]
