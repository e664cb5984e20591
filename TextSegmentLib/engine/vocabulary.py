"""What a model card's vocabulary says about a structure: its calibrated mask threshold, whether its holes are filled,
whether it is one piece and whether its edge is trimmed of outliers (what the model reads for a prompt is its
query's, see ``TextSegmentLib.prompts``)."""

from typing import Any, Dict, Optional, Sequence

#: the mask threshold of a structure the model card has not calibrated (and of single-slice refinements)
DEFAULT_MASK_THRESHOLD = 0.5


def _entry(name: str, vocabulary: Sequence[Any]) -> Dict[str, Any]:
    """The vocabulary entry named ``name`` with its settings (empty for a plain string entry or an unknown name)."""
    return next((e for e in vocabulary if isinstance(e, dict) and e.get("name") == name), {})


def calibrated_threshold(name: Optional[str], vocabulary: Sequence[Any]) -> float:
    """The fused-probability threshold calibrated for the vocabulary structure ``name`` (its entry's
    ``"mask_threshold"``, see ``training.calibrate``), else :data:`DEFAULT_MASK_THRESHOLD`.

    Example:
        >>> voc = [{"name": "left hippocampus", "mask_threshold": 0.4}, "brain"]
        >>> calibrated_threshold("left hippocampus", voc), calibrated_threshold("brain", voc)
        (0.4, 0.5)
    """
    value = _entry(name, vocabulary).get("mask_threshold")
    return DEFAULT_MASK_THRESHOLD if value is None else float(value)


def solid(name: str, vocabulary: Sequence[Any]) -> bool:
    """False for a vocabulary structure marked ``"fill_holes": false`` (a shell such as the skull: filling its holes
    slice by slice would add what it encloses), else True.

    Example:
        >>> solid("skull", [{"name": "skull", "fill_holes": False}, "brain"]), solid("brain", ["brain"])
        (False, True)
    """
    return bool(_entry(name, vocabulary).get("fill_holes", True))


def one_piece(name: str, vocabulary: Sequence[Any]) -> bool:
    """True for a vocabulary structure the model card marks ``"largest_only": true`` (a structure that is one piece,
    such as one hemisphere's hippocampus, whose validation scans came out better with only the largest 3D component
    kept; chosen by ``training.calibrate``), else False.

    Example:
        >>> voc = [{"name": "cerebellum", "largest_only": True}, "hippocampi"]
        >>> one_piece("cerebellum", voc), one_piece("hippocampi", voc)
        (True, False)
    """
    return bool(_entry(name, vocabulary).get("largest_only", False))


def outlier_sds(name: str, vocabulary: Sequence[Any]) -> float:
    """The robust standard deviations beyond which the edge voxels of a vocabulary structure are trimmed (its entry's
    ``"trim_outliers"``, chosen by ``training.calibrate``; see :mod:`.trim`), else 0 (no trimming).

    Example:
        >>> voc = [{"name": "left hippocampus", "trim_outliers": 2.5}]
        >>> outlier_sds("left hippocampus", voc), outlier_sds("brain", voc)
        (2.5, 0.0)
    """
    return float(_entry(name, vocabulary).get("trim_outliers") or 0.0)
