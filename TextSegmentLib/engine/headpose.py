"""Which inputs the engine estimates a head pose for, and the poses it found, by input content (imaging/pose.py does
the estimating; engine/volume.py resamples a turned head onto its own axes).

Example:
    >>> import numpy as np, SimpleITK as sitk
    >>> poses = HeadPoses()
    >>> image = sitk.GetImageFromArray(np.zeros((4, 8, 8), np.float32))
    >>> poses.get(image, {}, {"input": {}}) is None  # the card does not ask for it
    True
"""

import logging
import time
from typing import Any, Dict, Mapping, Optional

import SimpleITK as sitk

from ..imaging.pose import HeadPose, estimate_head_pose
from .volume import input_key, is_ct_input

log = logging.getLogger(__name__)
#: a volume whose coarsest spacing exceeds this multiple of its finest is never resampled onto the head's axes
MAX_ALIGN_ANISOTROPY = 2.0
#: poses kept (a batch over many volumes: the oldest go)
KEEP = 64


class HeadPoses:
    """The poses found so far, by input content."""

    def __init__(self) -> None:
        self._poses: Dict[str, HeadPose] = {}

    def get(
        self, image: sitk.Image, metadata: Mapping[str, str], card: Mapping[str, Any], modality: Optional[str] = None
    ) -> Optional[HeadPose]:
        """How the head is turned in an MR ``image`` (computed once per input content), or None when the model's
        ``card`` does not ask for it (``input.align_head``), for a CT (a head CT registered to the T1 template with
        errors of 17-24 degrees) and for thick slices (spacing more than twice as coarse along one axis: turning them
        blurs every view; on the validation variants it lost)."""
        if not card.get("input", {}).get("align_head"):
            return None
        spacing = image.GetSpacing()
        if max(spacing) > MAX_ALIGN_ANISOTROPY * min(spacing):
            return None
        if is_ct_input(sitk.GetArrayViewFromImage(image), metadata, modality):
            return None
        key = input_key(image)
        if key not in self._poses:
            t0 = time.perf_counter()
            self._poses[key] = estimate_head_pose(image)
            log.info("head pose %s in %.1f s", self._poses[key].to_dict(), time.perf_counter() - t0)
            while len(self._poses) > KEEP:
                self._poses.pop(next(iter(self._poses)))
        return self._poses[key]


__all__ = ["MAX_ALIGN_ANISOTROPY", "HeadPoses"]
