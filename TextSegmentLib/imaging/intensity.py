"""Intensity presets: CT windows chosen by anatomy, MR percentile clipping, all rescaled to [0, 255]."""

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

#: (level, width) in HU
CT_WINDOWS: Dict[str, Tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
_SAMPLE = 2_000_000


def _sample(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1)
    step = max(1, flat.size // _SAMPLE)
    return flat[::step]


def detect_ct(array: np.ndarray, metadata: Optional[Mapping[str, str]] = None) -> bool:
    """True when the volume is CT: DICOM Modality (0008|0060) if known, else Hounsfield-like values (air at -1000).

    Example:
        >>> detect_ct(np.full((4, 4, 4), -1000.0)), detect_ct(np.zeros((4, 4, 4)), {"0008|0060": "CT"})
        (True, True)
    """
    if metadata:
        modality = str(metadata.get("0008|0060", metadata.get("Modality", ""))).strip().upper()
        if modality:
            return modality == "CT"
    sample = _sample(array).astype(np.float32)
    low = float(np.percentile(sample, 1))
    return low <= -500.0 and float(sample.min()) >= -3100.0


def normalize_ct(array: np.ndarray, window: Tuple[float, float]) -> np.ndarray:
    """Apply a (level, width) window and rescale to float32 [0, 255]."""
    level, width = window
    lo = level - width / 2.0
    out = (array.astype(np.float32) - lo) * (255.0 / width)
    return np.clip(out, 0.0, 255.0, out=out)


def mr_range(array: np.ndarray, percentiles: Sequence[float] = (0.5, 99.5)) -> Tuple[float, float]:
    """The (low, high) intensities that :func:`normalize_mr` maps to 0 and 255: percentiles of a fixed voxel sample.

    Example:
        >>> mr_range(np.arange(1000.0).reshape(10, 10, 10), (0, 100))
        (0.0, 999.0)
    """
    lo, hi = np.percentile(_sample(array).astype(np.float32), list(percentiles))
    return float(lo), float(hi if hi > lo else lo + 1.0)


def normalize_mr(
    array: np.ndarray, percentiles: Sequence[float] = (0.5, 99.5), intensity_range: Optional[Tuple[float, float]] = None
) -> np.ndarray:
    """Clip to the given percentiles (of a fixed voxel sample) and rescale to float32 [0, 255]; with
    ``intensity_range`` (from :func:`mr_range` of a whole volume) part of that volume, e.g. some of its slices."""
    lo, hi = intensity_range or mr_range(array, percentiles)
    out = (array.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(out, 0.0, 255.0, out=out)


def normalize_volume(
    array: np.ndarray,
    is_ct: bool,
    window: Optional[Tuple[float, float]] = None,
    percentiles: Sequence[float] = (0.5, 99.5),
) -> np.ndarray:
    """CT with ``window`` (default soft tissue) or MR/other with percentiles -> float32 [0, 255]."""
    if is_ct:
        return normalize_ct(array, window or CT_WINDOWS["soft_tissue"])
    return normalize_mr(array, percentiles)
