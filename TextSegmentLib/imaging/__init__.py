"""Image preparation shared by inference and training: orientation, intensity, in-plane resizing.

These are the single implementation of each step; ``training/`` imports them from here.
"""

from .intensity import CT_WINDOWS, detect_ct, mr_range, normalize_ct, normalize_mr, normalize_volume
from .orientation import Reorientation, from_canonical, reorientation_for, to_canonical
from .resize import SliceFit, fit_slices, plan_fit

__all__ = [
    "CT_WINDOWS",
    "Reorientation",
    "SliceFit",
    "detect_ct",
    "fit_slices",
    "from_canonical",
    "mr_range",
    "normalize_ct",
    "normalize_mr",
    "normalize_volume",
    "plan_fit",
    "reorientation_for",
    "to_canonical",
]
