"""The result of a segmentation: per-prompt state, the reports, the labelmap in the input geometry, saving."""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import SimpleITK as sitk
import torch

from ..imaging.fov import cut_edges_reached
from ..prompts import Query
from .belief import Belief
from .decode import confidence_of
from .labelmap import DEFAULT_OVERLAP
from .volume import AXIS_NORMAL, PreparedVolume


def laterality_check(mask: np.ndarray, side: Optional[str]) -> Optional[str]:
    """'ok' when a canonical ``(S, P, L)`` mask lies mostly on ``side`` of the grid's midline, 'mismatch' when on the
    other side, None without a side or a mask."""
    if side not in ("left", "right") or not mask.any():
        return None
    profile = mask.sum(axis=(0, 1), dtype=np.int64)  # canonical (S, P, L): L grows to patient left
    centre = float((profile * np.arange(profile.size)).sum() / max(profile.sum(), 1))
    on_left = centre > (profile.size - 1) / 2.0
    return "ok" if on_left == (side == "left") else "mismatch"


@dataclass
class PartReport:
    """One part of a both-sides, group or spatial query: its vocabulary ``name``, ``side``, whether it was found,
    its own volume, its laterality check and mask threshold."""

    name: str
    side: Optional[str]
    found: bool
    volume_ml: float
    laterality_check: Optional[str] = None
    mask_threshold: Optional[float] = None


@dataclass
class SegmentReport:
    """What happened to one prompt. ``label`` is its value in the labelmap (prompt index + 1); ``confidence`` in
    [0, 1]; ``matched`` the model-card vocabulary name (None if not in the vocabulary); ``slices`` the first and last
    slice holding the segment, as indices along the input's own index axis nearest the slice normal (the convention
    of ``Segmenter.refine``'s int ``slice_index``); ``laterality_check`` is 'ok', 'mismatch' or None (no side in the
    prompt, or nothing found); ``mask_threshold`` the fused-probability threshold its mask was cut at (the model
    card's calibrated one for its structure unless the call set one; None if not segmented); ``largest_only``
    whether only its largest 3D piece was kept (the card's choice for its structure unless the call set one; None if
    not segmented); ``trim_outliers`` the robust standard deviations beyond which its edge voxels were trimmed (0:
    not trimmed; the largest of its parts' for a group; None if not segmented). How the prompt was read: ``kind``
    (structure, both_sides, group, spatial, finding, unsupported), ``reading`` (in words), ``side_read`` (how the
    side was read), ``parts`` (the parts segmented for a both-sides, group or spatial query, each with its own
    laterality check) and ``chosen`` (the part a spatial query kept)."""

    prompt: str
    label: int
    found: bool
    confidence: float
    volume_ml: float
    seconds: float
    matched: Optional[str] = None
    side: Optional[str] = None
    ct_window: Optional[str] = None
    slices: Optional[Tuple[int, int]] = None
    laterality_check: Optional[str] = None
    refinements: int = 0
    mask_threshold: Optional[float] = None
    largest_only: Optional[bool] = None
    trim_outliers: Optional[float] = None
    warnings: List[str] = field(default_factory=list)
    kind: str = "structure"
    reading: str = ""
    side_read: str = ""
    parts: List[PartReport] = field(default_factory=list)
    chosen: Optional[str] = None


@dataclass
class PromptState:
    """Working state of one prompt: the presence logits of every slice of every plane segmented
    ({plane: (N,)}) and the final mask in canonical ``(S, P, L)`` order (bool)."""

    prompt: str
    query: Query
    window: Any
    presence: Dict[str, torch.Tensor]
    mask: np.ndarray
    seconds: float
    refinements: int = 0
    known: bool = True  # False: the prompt names nothing in the model's vocabulary (nothing was segmented)
    text: Optional[str] = None  # what the model was given (the matched vocabulary name, or the prompt itself)
    threshold: Optional[float] = None  # the fused-probability threshold of its mask (None: nothing was segmented)
    largest_only: Optional[bool] = None  # whether only the largest 3D piece was kept (None: nothing was segmented)
    trim_outliers: Optional[float] = None  # the SDs its edge was trimmed at (0: not trimmed; None: not segmented)
    parts: List[PartReport] = field(default_factory=list)  # both sides, group, spatial: each part's own report
    chosen: Optional[str] = None  # spatial: the part kept
    belief: Optional[Belief] = None  # the fused probability the mask came from (3D clicks act on it)

    @property
    def match(self) -> Query:
        """The prompt's query (the former name)."""
        return self.query


@dataclass
class _Change:
    prompt_index: int
    plane: str
    slices: Dict[int, np.ndarray]  # previous contents of the changed slices of ``plane``
    seconds: float


class Result:
    """Segmentation of one volume for one or more prompts.

    ``labelmap`` is a SimpleITK image (uint8, uint16 beyond 255 prompts) with the input's size, spacing, origin and
    direction; label i + 1 is prompt i; where prompts overlap the smaller segment is drawn (``labelmap_for`` takes
    another order, see :mod:`.labelmap`). ``mask(i)`` is prompt i's own mask (before overlap resolution) as a bool
    array in the input's ``(k, j, i)`` order.
    """

    def __init__(self, volume: PreparedVolume, states: List[PromptState], info: Dict[str, Any]) -> None:
        self.volume = volume
        self.states = states
        self.info = info
        self._history: List[_Change] = []
        self._labelmap: Optional[sitk.Image] = None
        self._reports: Optional[List[SegmentReport]] = None

    def __repr__(self) -> str:
        parts = [
            f"{s.label}:{s.prompt!r} {'found' if s.found else 'not found'} {s.volume_ml:.1f} ml" for s in self.segments
        ]
        return f"<Result {'x'.join(map(str, self.volume.image.GetSize()))}: {'; '.join(parts)}>"

    # --- reports -------------------------------------------------------------------------------------------
    def _side_check(self, state: PromptState) -> Optional[str]:
        if state.parts:
            checks = {p.laterality_check for p in state.parts} - {None}
            if state.query.kind == "spatial":
                chosen = [p.laterality_check for p in state.parts if p.name == state.chosen]
                return chosen[0] if chosen else None
            return "mismatch" if "mismatch" in checks else ("ok" if checks else None)
        return laterality_check(state.mask, state.query.side)

    def _input_slices(self, occupied: np.ndarray) -> Tuple[int, int]:
        """First and last occupied slice as indices along the input's own axis nearest the primary plane's normal."""
        c = AXIS_NORMAL[self.volume.axis]
        if self.volume.reorientation.flips[c]:
            n = self.volume.num_slices
            return int(n - 1 - occupied[-1]), int(n - 1 - occupied[0])
        return int(occupied[0]), int(occupied[-1])

    def _report(self, index: int, state: PromptState) -> SegmentReport:
        mask = state.mask
        other = tuple(a for a in range(3) if a != 2 - AXIS_NORMAL[self.volume.axis])  # canonical axes in-plane
        occupied = np.flatnonzero(mask.any(axis=other))
        found = bool(occupied.size)
        warnings = []
        side_check = self._side_check(state)
        query = state.query
        warnings.extend(query.warnings)
        if query.reason:
            warnings.append(f"'{state.prompt}' was not segmented: {query.reason}")
        elif not state.known:
            warnings.append(
                f"'{state.prompt}' is not among the structures this model was trained on; nothing was segmented. "
                "Use a model that knows it, or draw a box on a slice to segment it anyway."
            )
        if side_check == "mismatch" and not state.parts:
            warnings.append(f"the segment lies mostly on the patient's other side than '{query.side}'")
        for part in state.parts:
            if part.laterality_check == "mismatch" and (query.kind != "spatial" or part.name == state.chosen):
                warnings.append(f"the part '{part.name}' lies mostly on the patient's other side")
        reached = cut_edges_reached(mask, self.volume.cut_ends) if found else []
        if reached:
            warnings.append(
                f"the segment reaches the {' and '.join(reached)} of the scan, where the field of view cuts through "
                "the body: the structure may go on beyond it, and the volume is that of the part inside"
            )
        window = state.window if (self.volume.is_ct and isinstance(state.window, str)) else None
        if self.volume.is_ct and not isinstance(state.window, str) and state.window is not None:
            window = "level {} width {}".format(*state.window)
        return SegmentReport(
            prompt=state.prompt,
            label=index + 1,
            found=found,
            confidence=round(confidence_of(state.presence, mask), 4),
            volume_ml=round(float(mask.sum()) * self.volume.voxel_ml, 3),
            seconds=round(state.seconds, 3),
            matched=query.term,
            side=query.side,
            ct_window=window,
            slices=self._input_slices(occupied) if found else None,
            laterality_check=side_check,
            refinements=state.refinements,
            mask_threshold=state.threshold,
            largest_only=state.largest_only,
            trim_outliers=state.trim_outliers,
            warnings=warnings,
            kind=query.kind,
            reading=query.reading,
            side_read=query.side_read,
            parts=list(state.parts),
            chosen=state.chosen,
        )

    @property
    def segments(self) -> List[SegmentReport]:
        """One :class:`SegmentReport` per prompt, in prompt order."""
        if self._reports is None:
            self._reports = [self._report(i, s) for i, s in enumerate(self.states)]
        return self._reports

    def _invalidate(self) -> None:
        self._labelmap = None
        self._reports = None

    # --- arrays and images ---------------------------------------------------------------------------------
    def mask(self, prompt_index: int) -> np.ndarray:
        """Prompt ``prompt_index``'s mask as a bool array in the input's (k, j, i) order."""
        return self.volume.to_input_array(self.states[prompt_index].mask)

    @property
    def views(self) -> Tuple[str, ...]:
        """The planes that were segmented and fused (the first is the primary plane)."""
        return tuple(self.info.get("options", {}).get("views") or (self.volume.axis,))

    @property
    def labelmap(self) -> sitk.Image:
        """The labelmap in the input geometry, smaller segments over larger ones (rebuilt after a refine or undo)."""
        if self._labelmap is None:
            self._labelmap = self.labelmap_for(DEFAULT_OVERLAP)
        return self._labelmap

    def labelmap_for(self, overlap: str = DEFAULT_OVERLAP) -> sitk.Image:
        """The labelmap with overlaps drawn in the order ``overlap`` ("smaller", "confident" or "first")."""
        from .writers import labelmap_image

        return labelmap_image(self, overlap)[0]

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able report: input geometry, settings, and one entry per prompt."""
        image = self.volume.image
        return {
            **self.info,
            "size": list(image.GetSize()),
            "spacing": list(image.GetSpacing()),
            "origin": list(image.GetOrigin()),
            "direction": list(image.GetDirection()),
            "slice_axis": self.volume.axis,
            "views": list(self.views),
            "modality": "CT" if self.volume.is_ct else "MR/other",
            "oblique_degrees": round(self.volume.reorientation.oblique_degrees, 3),
            "head_pose": None if getattr(self.volume, "pose", None) is None else self.volume.pose.to_dict(),
            "segments": [asdict(s) for s in self.segments],
        }

    def save(self, path: Union[str, Path], overwrite: bool = False, overlap: str = DEFAULT_OVERLAP) -> Path:
        """Write the labelmap (.nii.gz, .nii, .nrrd, .mha or .seg.nrrd) and ``<path>.json``, each read back before
        it is renamed into place (see :mod:`.writers`). ``.seg.nrrd`` keeps overlapping segments in separate layers;
        ``.dcm`` writes a DICOM Segmentation, one segment per found prompt (see :mod:`.dicomseg`).

        Raises ``FileExistsError`` if ``path`` exists and not ``overwrite``.
        """
        from .writers import write_result

        return write_result(self, path, overwrite=overwrite, overlap=overlap)
