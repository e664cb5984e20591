"""The frozen-mask regression case: the default model's masks for the demo prompts on a small real T1.

The case is stored in ``Testing/data/frozen/`` (about 150 KB in all):

- ``t1_3mm.nii.gz``: the Colin27 T1 (Debian mricron-data's ``ch2.nii.gz``) resampled to 3 mm, uint8;
- ``masks.nii.gz``: every prompt's own mask as one bit of a uint8 image (bit i = prompt i, so overlaps are kept);
- ``frozen.json``: the prompts, the model id and the settings the masks were made with, and each mask's voxel count.

``Testing/test_frozen_masks.py`` segments the stored T1 with the embedded default model on every run and compares
each mask to its frozen one (Dice >= 0.99; a prompt frozen as not found must stay not found). When the model changes
on purpose, regenerate the case and commit it with the model::

    .venv/bin/python scripts/regenerate_frozen_masks.py
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import SimpleITK as sitk

FOLDER = Path(__file__).resolve().parent / "data" / "frozen"
IMAGE, MASKS, META = FOLDER / "t1_3mm.nii.gz", FOLDER / "masks.nii.gz", FOLDER / "frozen.json"
SOURCE = Path("/usr/share/mricron/templates/ch2.nii.gz")  # Colin27 T1, 1 mm
SPACING_MM = 3.0
#: the settings every run uses: the reference precision on the CPU, the model card's planes
SETTINGS: Dict[str, Any] = {"device": "cpu", "precision": "float32"}
MIN_DICE = 0.99


def make_image() -> sitk.Image:
    """The stored input: the Colin27 T1 resampled to 3 mm (whole head), uint8."""
    head = sitk.ReadImage(str(SOURCE))
    size = [int(round(n * s / SPACING_MM)) for n, s in zip(head.GetSize(), head.GetSpacing())]
    return sitk.Resample(head, size, sitk.Transform(), sitk.sitkLinear, head.GetOrigin(), [SPACING_MM] * 3,
                         head.GetDirection(), 0.0, sitk.sitkUInt8)  # fmt: skip


def segment(image_path: Path, prompts: List[str]) -> Tuple[Any, List[np.ndarray]]:
    """The default model's result and each prompt's own mask (input ``(k, j, i)`` order) for the stored input."""
    from TextSegmentLib.app import open_segmenter

    segmenter = open_segmenter("default", **SETTINGS)
    result = segmenter.segment(str(image_path), prompts)
    return result, [result.mask(i) for i in range(len(prompts))]


def pack(masks: List[np.ndarray]) -> np.ndarray:
    """Masks (at most 8) as bits of one uint8 array."""
    packed = np.zeros(masks[0].shape, np.uint8)
    for i, mask in enumerate(masks):
        packed |= mask.astype(np.uint8) << i
    return packed


def unpack(packed: np.ndarray, count: int) -> List[np.ndarray]:
    """The masks :func:`pack` stored."""
    return [(packed >> i) & 1 == 1 for i in range(count)]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty).

    Example:
        >>> dice(np.array([1, 1, 0], bool), np.array([1, 0, 0], bool))
        0.6666666666666666
    """
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def load() -> Tuple[Dict[str, Any], List[np.ndarray], sitk.Image]:
    """(metadata, frozen masks, the masks' image) of the stored case."""
    meta = json.loads(META.read_text(encoding="utf-8"))
    image = sitk.ReadImage(str(MASKS))
    return meta, unpack(sitk.GetArrayFromImage(image), len(meta["prompts"])), image
