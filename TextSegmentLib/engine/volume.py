"""A volume prepared for the slice model: canonical LPS array, slice stack along an axis, intensity, slice fit.

Orientation: the input is reoriented to canonical LPS by the **nearest axis** (imaging/orientation.py: a permutation
and flips, no resampling), so results map back voxel-exactly. With ``conform_oblique`` (the Segmenter's default;
without it, obliquity above 20 degrees is warned about), a grid tilted by more than ``CONFORM_DEGREES`` (5) against
the anatomical axes is first resampled onto the nearest anatomical axes (imaging/conform.py, as FastSurfer conforms
its inputs): the model sees the head as in a straight acquisition, and masks are resampled back onto the input's
grid. With a ``pose`` whose head is turned (imaging/pose.py), the input is resampled onto the head's own axes
instead, so that the model sees a tilted head straight. ``image`` is always the input; input voxel indices map
through physical space then. A result is refined on the input's own grid (engine/rebase.py).

Slice views of the canonical ``(S, P, L)`` array (rows, columns of each 2D slice as the model sees it):

- axial: slices along S (inferior -> superior); rows anterior -> posterior, columns patient right -> left
- coronal: slices along P (anterior -> posterior); rows superior -> inferior, columns right -> left
- sagittal: slices along L (right -> left); rows superior -> inferior, columns anterior -> posterior
"""

import copy
import hashlib
import logging
import zlib
from typing import Dict, Mapping, MutableMapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch

from ..imaging import (
    CT_WINDOWS,
    detect_ct,
    fit_slices,
    mr_range,
    normalize_ct,
    normalize_mr,
    plan_fit,
    reorientation_for,
)
from ..imaging.conform import CONFORM_DEGREES, conform, conform_grid, head_grid, mask_to_input
from ..imaging.fov import cut_ends
from ..imaging.orientation import Reorientation, from_canonical, to_canonical
from ..imaging.pose import HeadPose

log = logging.getLogger(__name__)

SLICE_AXES = ("axial", "coronal", "sagittal")
#: canonical axis (0 = L, 1 = P, 2 = S) normal to each slice view
AXIS_NORMAL = {"axial": 2, "coronal": 1, "sagittal": 0}
OBLIQUE_WARNING_DEGREES = 20.0
#: a slice whose field of view cuts through the body is shown to the model extended by this much of its mirror image
MIRROR_PAD_MM = 30.0
#: ... where at least this much brain lies beyond the cut (a cap cut off near the vertex is left as it is)
MIRROR_MIN_BRAIN_MM = 45.0

WindowLike = Optional[object]


def check_axis(axis: str) -> str:
    """Validate a slice axis name."""
    if axis not in SLICE_AXES:
        raise ValueError(f"slice_axis must be one of {SLICE_AXES}, got {axis!r}")
    return axis


def is_ct_input(raw: np.ndarray, metadata: Mapping[str, str], modality: Optional[str]) -> bool:
    """Whether an input is a CT: as ``modality`` says ("CT" or "MR"), else as its values and metadata show."""
    return modality.strip().upper() == "CT" if modality else bool(detect_ct(raw, metadata))


def foreground_level(is_ct: bool, mr_low_high: Tuple[float, float]) -> float:
    """The value above which a voxel holds the body: -500 HU on a CT, a fifth of the MR intensity range."""
    if is_ct:
        return -500.0
    lo, hi = mr_low_high
    return lo + 0.2 * (hi - lo)


def content_digest(array: np.ndarray, geometry: object) -> str:
    """SHA-256 of ``array``'s shape and type, ``geometry`` (any repr-able value) and every slice's CRC-32: a volume
    that differs from another in any slice gets another key unless that slice's CRC collides (1 in 4e9 per differing
    slice, and CRC-32 catches every difference within 32 bits); 3.6x faster than SHA-256 of the voxels (a 157 MB CT
    in 23 ms instead of 83 ms)."""
    digest = hashlib.sha256()
    digest.update(repr((array.shape, str(array.dtype), geometry)).encode())
    crcs = [zlib.crc32(memoryview(np.ascontiguousarray(s)).cast("B")) for s in array]
    digest.update(np.asarray(crcs, dtype=np.uint32).tobytes())
    return digest.hexdigest()[:32]


def input_key(image: sitk.Image) -> str:
    """A key for an input's voxels and geometry (:func:`content_digest` of its array, spacing, origin, direction)."""
    geometry = (image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    return content_digest(sitk.GetArrayViewFromImage(image), geometry)


def slice_view(canonical: np.ndarray, axis: str) -> np.ndarray:
    """Canonical ``(S, P, L)`` array -> ``(N, rows, cols)`` stack of slices along ``axis`` (a view)."""
    if axis == "axial":
        return canonical
    if axis == "coronal":
        return np.flip(np.transpose(canonical, (1, 0, 2)), axis=1)
    return np.flip(np.transpose(canonical, (2, 0, 1)), axis=1)


def from_slice_view(stack: np.ndarray, axis: str) -> np.ndarray:
    """Exact inverse of :func:`slice_view`."""
    if axis == "axial":
        return stack
    if axis == "coronal":
        return np.transpose(np.flip(stack, axis=1), (1, 0, 2))
    return np.transpose(np.flip(stack, axis=1), (1, 2, 0))


def slice_pixel_spacing(canonical_spacing: Sequence[float], axis: str) -> Tuple[float, float]:
    """(row, column) spacing in mm of slices along ``axis``; ``canonical_spacing`` is (L, P, S)."""
    sl, sp, ss = canonical_spacing
    return {"axial": (sp, sl), "coronal": (ss, sl), "sagittal": (ss, sp)}[axis]


def end_pads(
    cuts: Sequence[Tuple[bool, bool]], brain: Sequence[Tuple[float, float]], canonical_spacing: Sequence[float]
) -> Tuple[Tuple[int, int], ...]:
    """Per canonical (S, P, L) axis, the voxels (low end, high end) by which slices lying across that axis are
    extended with their mirror image: ``MIRROR_PAD_MM`` where the field of view cuts through the body (``cuts``)
    and at least ``MIRROR_MIN_BRAIN_MM`` of brain lies beyond the cut (``brain``, mm, from the head pose: the cut
    goes through the deep brain, not through a cap near the vertex) while the axis's other end does not cut the
    brain (a slab cut on both sides would be tiled with copies of itself); 0 elsewhere and always along the
    left-right axis (the mirror image of a hemisphere cut at its side is a second copy of it where the other
    hemisphere should be). A coronal or sagittal slice of a scan that ends at the thalamus then shows the model a
    brain that goes on beyond the cut, as in the whole heads it mostly learned from, not one that ends in air.

    Example (a scan cut at the top of the thalami, 1 mm voxels; its lowest slices cut the neck, not the brain):
        >>> end_pads(((True, True), (False, False), (False, False)), ((0.0, 68.0),) + ((0.0, 0.0),) * 2,
        ...          (1.0, 1.0, 1.0))
        ((0, 30), (0, 0), (0, 0))
        >>> end_pads(((False, True), (False, False), (True, False)), ((0.0, 21.0), (0.0, 0.0), (70.0, 0.0)),
        ...          (1.0, 1.0, 1.0))  # 21 mm of brain above the cut; a cut through the right hemisphere: as they are
        ((0, 0), (0, 0), (0, 0))
    """
    spacing = tuple(canonical_spacing)[::-1]  # (L, P, S) -> canonical array order
    out = []
    for axis in range(3):
        ends = []
        for end in (0, 1):
            deep = float(brain[axis][end]) >= MIRROR_MIN_BRAIN_MM
            padded = axis != 2 and cuts[axis][end] and deep and not brain[axis][1 - end]
            ends.append(int(round(MIRROR_PAD_MM / max(float(spacing[axis]), 1e-6))) if padded else 0)
        out.append(tuple(ends))
    return tuple(out)  # type: ignore[return-value]


def view_pad(plane: str, pads: Sequence[Tuple[int, int]]) -> Tuple[int, int, int, int]:
    """``plane``'s slice pixels (top, bottom, left, right) of the canonical :func:`end_pads` ``pads``.

    Example:
        >>> view_pad("coronal", ((0, 30), (0, 0), (4, 0)))  # rows run superior -> inferior
        (30, 0, 4, 0)
    """
    rows_axis, cols_axis = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}[plane]
    top, bottom = pads[rows_axis][::-1] if rows_axis == 0 else pads[rows_axis]
    return int(top), int(bottom), int(pads[cols_axis][0]), int(pads[cols_axis][1])


def resolve_window(window: WindowLike) -> Tuple[float, float]:
    """A window name or (level, width) -> (level, width)."""
    if isinstance(window, str):
        if window not in CT_WINDOWS:
            raise ValueError(f"unknown CT window {window!r}; use one of {sorted(CT_WINDOWS)} or (level, width)")
        return CT_WINDOWS[window]
    level, width = window  # type: ignore[misc]
    if not (np.isfinite(float(level)) and np.isfinite(float(width))):
        raise ValueError(f"CT window level and width must be finite numbers, got ({level}, {width})")
    if float(width) <= 0:
        raise ValueError(f"CT window width must be positive, got {width}")
    return float(level), float(width)


class PlaneView:
    """The slices of a :class:`PreparedVolume` along one plane: the stack, its fit into the model input, and the
    model inputs of any slices. Embeddings are cached per plane view (its ``content_hash`` includes the plane)."""

    def __init__(self, volume: "PreparedVolume", plane: str) -> None:
        self.volume = volume
        self.plane = check_axis(plane)
        self.axis = self.plane
        self.stack = slice_view(volume.canonical, self.plane)
        self.num_slices, self.height, self.width = (int(s) for s in self.stack.shape)
        row_sp, col_sp = slice_pixel_spacing(volume.canonical_spacing, self.plane)
        pad = view_pad(self.plane, volume.end_pads)
        self.fit = plan_fit(self.height, self.width, row_sp, col_sp, volume.image_size, pad)
        self.is_ct = volume.is_ct
        self.slice_context = volume.slice_context

    @property
    def content_hash(self) -> str:
        """Hash of the canonical volume, the plane and the fit: equal for the same volume in any orientation."""
        pad = "" if not any(self.fit.pad) else ":pad" + "-".join(str(v) for v in self.fit.pad)
        return f"{self.volume.canonical_hash}:{self.plane}:{self.fit.h}x{self.fit.w}{pad}"

    def window_key(self, window: WindowLike) -> str:
        return self.volume.window_key(window)

    def normalized(self, indices: Sequence[int], window: WindowLike) -> np.ndarray:
        """Slices ``indices`` (clamped) as float32 in [0, 255]: CT window or MR percentiles of the whole volume."""
        idx = np.clip(np.asarray(indices, dtype=int), 0, self.num_slices - 1)
        if self.is_ct:
            return normalize_ct(self.stack[idx], resolve_window(window or "soft_tissue"))
        # only these slices, by the whole volume's percentiles (a further prompt encodes a few slices)
        return normalize_mr(slice_view(self.volume.canonical, self.plane)[idx], intensity_range=self.volume.mr_range())

    def model_inputs(self, indices: Sequence[int], window: WindowLike) -> torch.Tensor:
        """(B, 3, S, S) model inputs for slices ``indices`` (2.5D neighbours when the model uses slice context)."""
        idx = np.asarray(indices, dtype=int)
        if not self.slice_context:
            planes = fit_slices(self.normalized(idx, window), self.fit)
            return planes[:, None].expand(-1, 3, -1, -1).contiguous()
        needed = np.unique(np.concatenate([idx - 1, idx, idx + 1]).clip(0, self.num_slices - 1))
        planes = fit_slices(self.normalized(needed, window), self.fit)
        where: Dict[int, int] = {int(k): n for n, k in enumerate(needed)}

        def pick(k: np.ndarray) -> torch.Tensor:
            return planes[[where[int(v)] for v in np.clip(k, 0, self.num_slices - 1)]]

        return torch.stack([pick(idx - 1), pick(idx), pick(idx + 1)], dim=1)


class PreparedVolume:
    """An input image in canonical orientation, ready to be sliced along any plane and encoded.

    ``axis`` is the primary plane (the first of the views segmented); ``stack``, ``fit``, ``num_slices``,
    ``model_inputs`` ... are those of the primary plane, ``view(plane)`` gives any plane's :class:`PlaneView`.

    Example:
        >>> img = sitk.GetImageFromArray(np.random.rand(6, 10, 12).astype(np.float32))
        >>> pv = PreparedVolume(img, {}, image_size=64, axis="axial")
        >>> pv.num_slices, pv.model_inputs([0, 1], None).shape, pv.view("sagittal").num_slices
        (6, torch.Size([2, 3, 64, 64]), 12)
    """

    def __init__(
        self,
        image: sitk.Image,
        metadata: Mapping[str, str],
        image_size: int,
        axis: str = "axial",
        slice_context: bool = False,
        modality: Optional[str] = None,
        mr_percentiles: Sequence[float] = (0.5, 99.5),
        ranges: Optional[MutableMapping[str, Tuple[float, float]]] = None,
        conform_oblique: Optional[bool] = False,
        pose: Optional[HeadPose] = None,
    ) -> None:
        self.image = image
        #: how the head is turned in the input (None: not estimated); a turned head is segmented on its own axes
        self.pose = pose
        self.axis = check_axis(axis)
        self.image_size = int(image_size)
        self.reorientation = reorientation_for(image.GetDirection())
        raw = sitk.GetArrayViewFromImage(image)
        self.is_ct = is_ct_input(raw, metadata, modality)
        #: the grid on the nearest anatomical axes that an oblique input is resampled onto (None: not oblique)
        self.grid = None
        turned = pose is not None and pose.turned
        if turned or (conform_oblique and self.reorientation.oblique_degrees > CONFORM_DEGREES):
            head = raw > foreground_level(self.is_ct, (0.0, 0.0) if self.is_ct else mr_range(raw))
            self.grid = head_grid(image, pose.matrix, head) if turned else conform_grid(image, foreground=head)
        if turned:
            log.info("the head is turned by %.1f degrees: resampled onto the head's own axes", pose.degrees)
        elif self.grid is not None and pose is not None and pose.along_grid:
            self.grid = None  # the grid follows the head: read it as it is
            log.info(
                "the volume is oblique by %.1f degrees along the head (turned %.1f degrees on its grid, %.1f on the "
                "anatomical axes): read on its own grid",
                self.oblique_degrees,
                pose.degrees,
                pose.world_degrees,
            )
        elif self.grid is not None:
            log.info("the volume is oblique by %.1f degrees: resampled onto the anatomical axes", self.oblique_degrees)
        if (
            self.grid is None
            and conform_oblique is False
            and self.reorientation.oblique_degrees > OBLIQUE_WARNING_DEGREES
        ):
            log.warning(
                "the volume is oblique by %.1f degrees and conform_oblique is off (--no-conform-oblique): it is "
                "segmented on its nearest anatomical axes, so its 'axial' slices are tilted by that angle; leave "
                "conform_oblique on (the default) to resample it onto the anatomical axes",
                self.reorientation.oblique_degrees,
            )
        if self.grid is not None:
            conformed = sitk.GetArrayFromImage(conform(image, self.grid))
            straight = reorientation_for(self.grid.GetDirection())  # same axes, no tilt
            self.reorientation = Reorientation(straight.permutation, straight.flips, self.reorientation.oblique_degrees)
            self.canonical = to_canonical(conformed, self.reorientation)
        else:
            self.canonical = to_canonical(raw, self.reorientation)
        self.canonical_spacing = self.reorientation.canonical_spacing(image.GetSpacing())
        self.slice_context = slice_context
        self.mr_percentiles = tuple(mr_percentiles)
        self.voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
        self._mr: Optional[Tuple[float, float]] = None
        self._ranges = ranges
        self._hash: Optional[str] = None
        self._cut_ends: Optional[Tuple[Tuple[bool, bool], ...]] = None
        #: per canonical axis, how far (mm) the brain goes on beyond the field of view's (low, high) end (from the
        #: head pose's registration; 0 at an end that does not cut the brain, and always without a pose or for a
        #: volume resampled onto other axes)
        self.brain_ends = self._brain_ends()
        self._views: Dict[str, PlaneView] = {}
        self._mirror: Optional[PreparedVolume] = None
        primary = self.view(self.axis)
        self.stack, self.fit = primary.stack, primary.fit
        self.num_slices, self.height, self.width = primary.num_slices, primary.height, primary.width

    def mirrored(self) -> "PreparedVolume":
        """The same volume mirrored left-right (the canonical L axis reversed; built once): the patient's left shows
        where the right was. Its sagittal slices are this volume's in reverse order (same pixels, same intensity
        range); its masks map back with ``[:, :, ::-1]``. For segmentation only: it has no input grid of its own.

        Example:
            >>> img = sitk.GetImageFromArray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
            >>> pv = PreparedVolume(img, {}, image_size=64)
            >>> pv.mirrored().canonical[0, 0].tolist(), pv.canonical[0, 0].tolist()
            ([3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0])
        """
        if self._mirror is None:
            mirror = copy.copy(self)
            mirror.canonical = np.ascontiguousarray(self.canonical[:, :, ::-1])
            mirror._mr = None if self.is_ct else self.mr_range()  # the same values: the same intensity range
            mirror._hash, mirror._cut_ends, mirror._views, mirror._mirror = None, None, {}, None
            mirror.brain_ends = (*self.brain_ends[:2], self.brain_ends[2][::-1])
            mirror.stack = mirror.view(mirror.axis).stack  # the primary plane's slices are the mirror's own
            self._mirror = mirror
        return self._mirror

    def view(self, plane: str) -> PlaneView:
        """The :class:`PlaneView` of ``plane`` (built once)."""
        if plane not in self._views:
            self._views[plane] = PlaneView(self, plane)
        return self._views[plane]

    @property
    def canonical_hash(self) -> str:
        """Hash of the canonical voxels and geometry: equal for the same volume stored in any orientation."""
        if self._hash is None:  # paid on every prompt: slice CRCs, not a hash of the voxels
            self._hash = content_digest(self.canonical, self.canonical_spacing)
        return self._hash

    @property
    def content_hash(self) -> str:
        """Hash of the primary plane's slice stack (see :attr:`PlaneView.content_hash`)."""
        return self.view(self.axis).content_hash

    def window_key(self, window: WindowLike) -> str:
        """Cache key part for the intensity preset used with ``window``."""
        if not self.is_ct:
            return f"mr{self.mr_percentiles}"
        return "ct{}".format(resolve_window(window or "soft_tissue"))

    def mr_range(self) -> Tuple[float, float]:
        """The intensities that MR slices map to 0 and 255: the volume's percentiles (computed once; with ``ranges``,
        once per canonical content: a further prompt on the same volume looks them up by its hash)."""
        if self._mr is None:
            if self._ranges is None:
                self._mr = mr_range(self.canonical, self.mr_percentiles)
            else:
                key = f"{self.canonical_hash}:{self.mr_percentiles}"
                if key not in self._ranges:
                    self._ranges[key] = mr_range(self.canonical, self.mr_percentiles)
                self._mr = self._ranges[key]
        return self._mr

    def normalized(self, indices: Sequence[int], window: WindowLike) -> np.ndarray:
        """Primary-plane slices ``indices`` as float32 in [0, 255]."""
        return self.view(self.axis).normalized(indices, window)

    def model_inputs(self, indices: Sequence[int], window: WindowLike) -> torch.Tensor:
        """(B, 3, S, S) model inputs of primary-plane slices ``indices``."""
        return self.view(self.axis).model_inputs(indices, window)

    @property
    def cut_ends(self) -> Tuple[Tuple[bool, bool], ...]:
        """Per canonical axis (S, P, L), whether its (low, high) end cuts through the body (imaging/fov.py;
        foreground: CT above -500 HU, MR above a fifth of its intensity range); computed once."""
        if self._cut_ends is None:
            mr = (0.0, 0.0) if self.is_ct else self.mr_range()
            self._cut_ends = cut_ends(self.canonical, foreground_level(self.is_ct, mr))
        return self._cut_ends

    def _brain_ends(self) -> Tuple[Tuple[float, float], ...]:
        if self.pose is None or self.grid is not None:
            return ((0.0, 0.0),) * 3
        out = []
        for axis in range(3):  # canonical array axis S, P, L = canonical index 2, 1, 0
            c = 2 - axis
            low, high = self.pose.brain_beyond_mm[self.reorientation.permutation[c]]
            out.append((high, low) if self.reorientation.flips[c] else (low, high))
        return tuple(out)

    @property
    def end_pads(self) -> Tuple[Tuple[int, int], ...]:
        """Per canonical axis, the mirror padding (low, high) in voxels that slices across it get (:func:`end_pads`)."""
        return end_pads(self.cut_ends, self.brain_ends, self.canonical_spacing)

    @property
    def oblique_degrees(self) -> float:
        """The input grid's largest tilt against the anatomical axes (degrees)."""
        return float(self.reorientation.oblique_degrees)

    def to_input_array(self, canonical: np.ndarray) -> np.ndarray:
        """A canonical ``(S, P, L)`` mask or label array -> input ``(k, j, i)`` order (exact inverse of the
        preparation; for a resampled input (an oblique grid, a turned head), each label's mask resampled back onto
        the input's grid, in increasing order of label)."""
        array = np.ascontiguousarray(from_canonical(canonical, self.reorientation))
        if self.grid is None:
            return array
        if array.dtype == bool:
            return mask_to_input(array, self.grid, self.image)
        out = np.zeros(sitk.GetArrayViewFromImage(self.image).shape, dtype=array.dtype)
        for label in np.unique(array):
            if label != 0:
                out[mask_to_input(array == label, self.grid, self.image)] = label
        return out

    def from_input_mask(self, mask: np.ndarray) -> np.ndarray:
        """A boolean mask in input ``(k, j, i)`` order -> a canonical ``(S, P, L)`` bool copy (inverse of
        :meth:`to_input_array`; an oblique input's mask is resampled onto the conformed grid)."""
        array = np.asarray(mask) != 0
        if self.grid is not None:
            array = mask_to_input(array, self.image, self.grid)
        return np.ascontiguousarray(to_canonical(array, self.reorientation))

    def index_to_canonical(self, ijk: Sequence[float]) -> Tuple[float, float, float]:
        """Input voxel index (i, j, k) -> canonical (L, P, S) index (continuous, exact for integers)."""
        size = self.image.GetSize()
        if self.grid is not None:  # through physical space onto the conformed grid
            point = self.image.TransformContinuousIndexToPhysicalPoint([float(v) for v in ijk])
            ijk = self.grid.TransformPhysicalPointToContinuousIndex(point)
            size = self.grid.GetSize()
        canon = [0.0, 0.0, 0.0]  # L, P, S
        for c in range(3):
            p = self.reorientation.permutation[c]
            v = float(ijk[p])
            canon[c] = (size[p] - 1 - v) if self.reorientation.flips[c] else v
        return canon[0], canon[1], canon[2]

    def canonical_to_view(self, lps: Sequence[float], plane: str) -> Tuple[float, float, float]:
        """Canonical (L, P, S) index -> (slice, row, col) in ``plane`` (see the module docstring)."""
        li, pi, si = lps
        n_s = self.canonical.shape[0]
        if plane == "axial":
            return si, pi, li
        if plane == "coronal":
            return pi, n_s - 1 - si, li
        return li, n_s - 1 - si, pi

    def input_index_to_view(self, ijk: Sequence[float], plane: Optional[str] = None) -> Tuple[float, float, float]:
        """Input voxel index (i, j, k) -> (slice, row, col) in ``plane`` (default the primary plane)."""
        return self.canonical_to_view(self.index_to_canonical(ijk), plane or self.axis)

    def physical_to_index(self, point: Sequence[float]) -> Tuple[float, float, float]:
        """Physical LPS point (mm) -> continuous input voxel index (i, j, k)."""
        return tuple(self.image.TransformPhysicalPointToContinuousIndex([float(v) for v in point]))  # type: ignore
